package main_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// TestE2E_RFC7118_WebSocketUAThroughEdge: a RFC 7118 UA (sip subprotocol,
// one SIP message per text frame, a .invalid Via host as browsers use)
// registers with outbound through the real binary's WS listener, and a
// PBX INVITE reaches it over that WebSocket connection and is answered
// (RFC 7118 §5, RFC 5626 §5.3).
func TestE2E_RFC7118_WebSocketUAThroughEdge(t *testing.T) {
	wsPort := freePort(t)
	p, _, regPort := startAllInOne(t, fmt.Sprintf("{transport: ws, address: 127.0.0.1:%d}", wsPort))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, _, err := ws.Dialer{Protocols: []string{"sip"}}.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d/", wsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	read := func(want string) string {
		t.Helper()
		for {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, err := wsutil.ReadServerText(c)
			if err != nil {
				t.Fatalf("waiting for %q over WS: %v", want, err)
			}
			if m := string(b); strings.HasPrefix(m, want) {
				return m
			}
		}
	}
	header := func(m, name string) []string {
		var out []string
		for _, l := range strings.Split(strings.SplitN(m, "\r\n\r\n", 2)[0], "\r\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
				out = append(out, strings.TrimSpace(v))
			}
		}
		return out
	}
	const host = "df7jal23ls0d.invalid"
	reg := "REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/WS " + host + ";branch=z9hG4bKwsreg1\r\n" +
		"Max-Forwards: 70\r\nTo: <sip:wendy@example.com>\r\nFrom: <sip:wendy@example.com>;tag=ws1\r\n" +
		"Call-ID: ws-reg-1\r\nCSeq: 1 REGISTER\r\nSupported: path, outbound, gruu\r\n" +
		"Contact: <sip:wendy@" + host + ";transport=ws;ob>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-0000000000ee>\";reg-id=1\r\n" +
		"Expires: 600\r\nContent-Length: 0\r\n\r\n"
	if err := wsutil.WriteClientText(c, []byte(reg)); err != nil {
		t.Fatal(err)
	}
	ok := read("SIP/2.0 200")
	if path := strings.Join(header(ok, "Path"), ","); !strings.Contains(path, ";ob") {
		t.Errorf("REGISTER 200 Path %q lacks the edge's ;ob entry", path)
	}
	if ft := header(ok, "Flow-Timer"); len(ft) != 1 || ft[0] != "120" {
		t.Errorf("Flow-Timer %v, want 120 (stream)", ft)
	}
	if _, m := p.get("/metrics"); !strings.Contains(m, `pinhole_edge_flows{transport="ws"} 1`) {
		t.Errorf("edge holds no WS flow:\n%s", grepLines(m, "pinhole_edge_flows"))
	}

	codes := make(chan int, 1)
	go func() { codes <- pbxInviteTo(t, regPort, "sip:wendy@example.com", "ws-call-1") }()
	inv := read("INVITE ")
	if !strings.HasPrefix(inv, "INVITE sip:wendy@"+host) {
		t.Errorf("INVITE Request-URI: %q, want the registered Contact", strings.SplitN(inv, "\r\n", 2)[0])
	}
	var b strings.Builder
	b.WriteString("SIP/2.0 200 OK\r\n")
	for _, v := range header(inv, "Via") {
		b.WriteString("Via: " + v + "\r\n")
	}
	for _, v := range header(inv, "Record-Route") {
		b.WriteString("Record-Route: " + v + "\r\n")
	}
	b.WriteString("From: " + header(inv, "From")[0] + "\r\nTo: " + header(inv, "To")[0] + ";tag=wsua\r\n")
	b.WriteString("Call-ID: " + header(inv, "Call-ID")[0] + "\r\nCSeq: " + header(inv, "CSeq")[0] + "\r\n")
	b.WriteString("Contact: <sip:wendy@" + host + ";transport=ws;ob>\r\nContent-Length: 0\r\n\r\n")
	if err := wsutil.WriteClientText(c, []byte(b.String())); err != nil {
		t.Fatal(err)
	}
	if code := <-codes; code != 200 {
		t.Fatalf("PBX got %d, want 200 from the WS UA", code)
	}
}
