package main_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/dtls/v2"
)

// TestE2E_DTLSOutboundThroughBinary: a pion/dtls UA registers through the
// real binary (edge + registrar) over DTLS with outbound (RFC 5626 §4.2),
// gets its CRLFCRLF keep-alive answered inside the association, receives
// the PBX's INVITE over that association; once it closes the association
// the PBX's INVITE gets 480 (the edge's 430 stays inside, RFC 5626 §5.3).
func TestE2E_DTLSOutboundThroughBinary(t *testing.T) {
	dport := freePort(t)
	// idle_timeout is the backstop when close_notify is lost: DTLS never
	// retransmits it, and over UDP a loaded machine can drop it.
	// The idle timeout must exceed the UDP Flow-Timer (RFC 5626 §4.4.1).
	a := newAllInOne(t)
	a.extraEdgeListen = []string{fmt.Sprintf("{transport: dtls, address: 127.0.0.1:%d, tls: {self_signed: true}, idle_timeout: 6s}", dport)}
	a.extraEdge = "  flow_timer: {udp: 2s, stream: 120s}\n"
	p, regPort := a.start(t), a.regPort
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dtls.DialWithContext(ctx, "udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: dport},
		&dtls.Config{InsecureSkipVerify: true, ExtendedMasterSecret: dtls.RequireExtendedMasterSecret})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	recv := func() string {
		t.Helper()
		b := make([]byte, 1<<14)
		for {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := c.Read(b)
			if err != nil {
				t.Fatal(err)
			}
			if s := string(b[:n]); strings.Trim(s, "\r\n") != "" || s == "\r\n" {
				return s
			}
		}
	}
	local := c.LocalAddr().String()
	reg := "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/DTLS " + local + ";branch=z9hG4bK-dt1;rport\r\nMax-Forwards: 70\r\n" +
		"From: <sip:dtls@127.0.0.1>;tag=1\r\nTo: <sip:dtls@127.0.0.1>\r\nCall-ID: e2e-dtls\r\nCSeq: 1 REGISTER\r\n" +
		"Contact: <sip:dtls@" + local + ";transport=dtls>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-00000000d715>\";reg-id=1\r\n" +
		"Supported: path, outbound\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(reg)); err != nil {
		t.Fatal(err)
	}
	if res := recv(); !strings.HasPrefix(res, "SIP/2.0 200 ") || !strings.Contains(res, "Flow-Timer: 2") {
		t.Fatalf("REGISTER over DTLS: %q", res)
	}
	if _, err := c.Write([]byte("\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if pong := recv(); pong != "\r\n" {
		t.Fatalf("keep-alive answer %q", pong)
	}

	pbx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pbx.Close()
	invite := func(n int) {
		t.Helper()
		msg := fmt.Sprintf("INVITE sip:dtls@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-pbx%[2]d;rport\r\nMax-Forwards: 70\r\n"+
			"From: <sip:pbx@127.0.0.1>;tag=p%[2]d\r\nTo: <sip:dtls@127.0.0.1>\r\nCall-ID: e2e-dtls-inv%[2]d\r\nCSeq: 1 INVITE\r\n"+
			"Contact: <sip:pbx@%[1]s>\r\nContent-Length: 0\r\n\r\n", pbx.LocalAddr(), n)
		if _, err := pbx.WriteTo([]byte(msg), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: regPort}); err != nil {
			t.Fatal(err)
		}
	}
	// final returns the final response to INVITE n (retransmissions of
	// earlier finals are skipped) and ACKs it (RFC 3261 §17.1.1.3).
	final := func(n int) string {
		t.Helper()
		b := make([]byte, 65535)
		callID := fmt.Sprintf("Call-ID: e2e-dtls-inv%d\r\n", n)
		for {
			_ = pbx.SetReadDeadline(time.Now().Add(15 * time.Second))
			k, _, err := pbx.ReadFrom(b)
			if err != nil {
				t.Fatal("PBX: no final response:", err)
			}
			s := string(b[:k])
			if !strings.HasPrefix(s, "SIP/2.0 ") || strings.HasPrefix(s, "SIP/2.0 1") || !strings.Contains(s, callID) {
				continue
			}
			res := parseMsg(t, s)
			ack := fmt.Sprintf("ACK sip:dtls@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-pbx%[2]d;rport\r\nMax-Forwards: 70\r\n"+
				"From: <sip:pbx@127.0.0.1>;tag=p%[2]d\r\nTo: %[3]s\r\nCall-ID: e2e-dtls-inv%[2]d\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
				pbx.LocalAddr(), n, res.get("To")[0])
			_, _ = pbx.WriteTo([]byte(ack), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: regPort})
			return s
		}
	}
	invite(1)
	req := recv()
	if !strings.HasPrefix(req, "INVITE ") || !strings.Contains(req, "Via: SIP/2.0/DTLS ") {
		t.Fatalf("UA got %q", req)
	}
	m := parseMsg(t, req)
	busy := "SIP/2.0 486 Busy Here\r\n"
	for _, v := range m.get("Via") {
		busy += "Via: " + v + "\r\n"
	}
	busy += "From: " + m.get("From")[0] + "\r\nTo: " + m.get("To")[0] + ";tag=ua\r\nCall-ID: " + m.get("Call-ID")[0] +
		"\r\nCSeq: " + m.get("CSeq")[0] + "\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(busy)); err != nil {
		t.Fatal(err)
	}
	if res := final(1); !strings.HasPrefix(res, "SIP/2.0 486 ") {
		t.Fatalf("PBX got %q", res)
	}
	c.Close()
	// close_notify ends the association and its flow (or, should the
	// datagram be lost, the idle timeout): wait for the flow gauge before
	// the next INVITE, so it cannot race the close.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, metrics := p.get("/metrics")
		if strings.Contains(metrics, `pinhole_edge_flows{transport="dtls"} 0`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("dtls flow still counted after close_notify and the idle timeout")
		}
		<-time.After(20 * time.Millisecond) // polling the gauge, bounded by deadline
	}
	invite(2)
	if res := final(2); !strings.HasPrefix(res, "SIP/2.0 480 ") {
		t.Errorf("INVITE after the association closed: %q, want 480", res)
	}
}
