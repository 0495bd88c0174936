package adminapi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/adminapi"
	"github.com/pinhole-sip/pinhole/registrar"
)

type bindingsResp struct {
	AOR      string                 `json:"aor"`
	Bindings []adminapi.BindingJSON `json:"bindings"`
}

type flowsResp struct {
	Flows []struct {
		ID         uint64 `json:"id"`
		Transport  string `json:"transport"`
		Remote     string `json:"remote"`
		Token      string `json:"token"`
		Keepalives uint64 `json:"keepalives"`
		Bindings   []struct {
			AOR      string `json:"aor"`
			Instance string `json:"instance"`
			RegID    int64  `json:"reg_id"`
		} `json:"bindings"`
	} `json:"flows"`
}

const (
	inst = `"<urn:uuid:00000000-0000-0000-0000-0000000000a1>"`
	// obParams make an RFC 5626 outbound Contact (instance, reg-id, ob).
	obParams = `;+sip.instance=` + inst + `;reg-id=1`
)

// TestAPIRegistrationsAndFlows exercises every registrar and edge
// endpoint on both stores.
func TestAPIRegistrationsAndFlows(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b.new(t), nil)
			alice := e.newUA()
			if code := e.register(alice, "alice", obParams, "Supported: outbound, path"); code != 200 {
				t.Fatalf("alice REGISTER: %d", code)
			}
			bob := e.newUA()
			if code := e.register(bob, "bob", ""); code != 200 {
				t.Fatalf("bob REGISTER: %d", code)
			}
			if code := e.register(bob, "bob", ";x=2", "Contact: <sip:bob2@192.0.2.9:5060>"); code != 200 {
				t.Fatalf("bob second REGISTER: %d", code)
			}

			// Show, with the AOR canonicalised as REGISTER does.
			var got bindingsResp
			if code := e.call("GET", "/api/v1/registrations", url.Values{"aor": {"<SIP:alice@127.0.0.1;transport=udp>"}}, "", &got); code != 200 {
				t.Fatalf("show: %d", code)
			}
			if got.AOR != "sip:alice@127.0.0.1" || len(got.Bindings) != 1 {
				t.Fatalf("show alice = %+v", got)
			}
			bd := got.Bindings[0]
			la := alice.c.LocalAddr().String()
			checks := []struct {
				name string
				ok   bool
			}{
				{"contact", bd.Contact == "sip:alice@"+la},
				{"expires_in", bd.ExpiresIn > 590 && bd.ExpiresIn <= 600},
				{"expires_at", bd.ExpiresAt.Sub(time.Now()) > 590*time.Second},
				{"q absent", bd.Q == nil},
				{"call_id", bd.CallID == "alice-"+la},
				{"cseq", bd.CSeq == 1},
				{"instance", bd.Instance == "<urn:uuid:00000000-0000-0000-0000-0000000000a1>"},
				{"reg_id", bd.RegID == 1},
				{"outbound", bd.Outbound},
				{"path", len(bd.Path) == 1 && strings.Contains(bd.Path[0], ";ob")},
				{"source (the edge)", bd.Source.Transport == "udp" && strings.HasPrefix(bd.Source.Address, "127.0.0.1:")},
				{"user_agent", bd.UserAgent == "TestPhone/1.2 (adminapi)"},
				{"pub_gruu", bd.PubGRUU == "sip:alice@127.0.0.1;gr=urn:uuid:00000000-0000-0000-0000-0000000000a1"},
				{"registered_at", !bd.RegisteredAt.IsZero() && !bd.UpdatedAt.Before(bd.RegisteredAt)},
				{"flow", bd.Flow != nil && bd.Flow.Remote == la && bd.Flow.Transport == "udp"},
				{"flow_token", bd.FlowToken != ""},
			}
			for _, c := range checks {
				if !c.ok {
					t.Errorf("binding field %s wrong: %+v", c.name, bd)
				}
			}
			if code := e.call("GET", "/api/v1/registrations", url.Values{"aor": {"sip:nobody@127.0.0.1"}}, "", &got); code != 200 || len(got.Bindings) != 0 || got.Bindings == nil {
				t.Errorf("unknown AOR: %d %+v", code, got)
			}
			if code := e.call("GET", "/api/v1/registrations", url.Values{"aor": {"tel:+1555"}}, "", nil); code != 400 {
				t.Errorf("bad AOR: %d, want 400", code)
			}

			// List, paged.
			var page registrar.AORPage
			if code := e.call("GET", "/api/v1/registrations", url.Values{"limit": {"1"}}, "", &page); code != 200 ||
				len(page.AORs) != 1 || page.AORs[0].AOR != "sip:alice@127.0.0.1" || page.Next == "" {
				t.Fatalf("list page 1: %d %+v", code, page)
			}
			e.call("GET", "/api/v1/registrations", url.Values{"limit": {"1"}, "cursor": {page.Next}}, "", &page)
			if len(page.AORs) != 1 || page.AORs[0] != (registrar.AORCount{AOR: "sip:bob@127.0.0.1", Bindings: 2}) {
				t.Fatalf("list page 2: %+v", page)
			}
			if code := e.call("GET", "/api/v1/registrations", url.Values{"limit": {"0"}}, "", nil); code != 400 {
				t.Errorf("limit 0: %d", code)
			}

			// Flows: by AOR (the edge binds outbound identities), transport, remote.
			var fl flowsResp
			e.call("GET", "/api/v1/flows", url.Values{"aor": {"sip:alice@127.0.0.1"}}, "", &fl)
			if len(fl.Flows) != 1 || fl.Flows[0].Remote != la || len(fl.Flows[0].Bindings) != 1 ||
				fl.Flows[0].Bindings[0].RegID != 1 || fl.Flows[0].Token != bd.FlowToken {
				t.Fatalf("flows by aor: %+v", fl)
			}
			aliceFlow := fl.Flows[0].ID
			e.call("GET", "/api/v1/flows", url.Values{"transport": {"UDP"}}, "", &fl)
			if len(fl.Flows) < 2 {
				t.Errorf("flows by transport: %+v", fl)
			}
			e.call("GET", "/api/v1/flows", url.Values{"remote": {bob.c.LocalAddr().String()}}, "", &fl)
			if len(fl.Flows) != 1 || fl.Flows[0].Remote != bob.c.LocalAddr().String() {
				t.Errorf("flows by remote ip:port: %+v", fl)
			}
			if code := e.call("GET", "/api/v1/flows", url.Values{"transport": {"carrier-pigeon"}}, "", nil); code != 400 {
				t.Errorf("bad transport: %d", code)
			}

			// Close alice's UDP flow: it is forgotten, the binding's flow is gone.
			var closed map[string]any
			if code := e.call("DELETE", fmt.Sprintf("/api/v1/flows/%d", aliceFlow), nil, "", &closed); code != 200 {
				t.Fatalf("close flow: %d", code)
			}
			e.call("GET", "/api/v1/registrations", url.Values{"aor": {"sip:alice@127.0.0.1"}}, "", &got)
			if len(got.Bindings) != 1 || got.Bindings[0].Flow != nil {
				t.Errorf("after closing the flow, binding still shows it: %+v", got.Bindings)
			}
			if code := e.call("DELETE", fmt.Sprintf("/api/v1/flows/%d", aliceFlow), nil, "", nil); code != 404 {
				t.Errorf("close twice: %d, want 404", code)
			}

			// A stream flow is closed for real.
			c, err := net.Dial("tcp", e.edgeTC.String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// On loopback (trusted_core) a connection is a flow once it
			// carries access traffic: send a REGISTER over it first.
			tla := c.LocalAddr().String()
			reg := "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP " + tla + ";branch=z9hG4bKtcpflow;rport\r\n" +
				"Max-Forwards: 70\r\nTo: <sip:tcpuser@127.0.0.1>\r\nFrom: <sip:tcpuser@127.0.0.1>;tag=t\r\n" +
				"Call-ID: tcpflow\r\nCSeq: 1 REGISTER\r\nContact: <sip:tcpuser@" + tla + ";transport=tcp>\r\n" +
				"Expires: 0\r\nContent-Length: 0\r\n\r\n" // no binding: later counts stay as they are
			if _, err := c.Write([]byte(reg)); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			for final := false; !final; {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("REGISTER over TCP: %v", err)
				}
				if strings.HasPrefix(line, "SIP/2.0 ") && !strings.HasPrefix(line, "SIP/2.0 1") {
					final = true
				}
			}
			for { // the rest of the final response, up to its blank line
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				if line == "\r\n" {
					break
				}
			}
			if _, err := c.Write([]byte("\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			pong := make([]byte, 2)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(br, pong); err != nil {
				t.Fatalf("pong: %v", err)
			}
			e.call("GET", "/api/v1/flows", url.Values{"remote": {c.LocalAddr().String()}, "transport": {"tcp"}}, "", &fl)
			if len(fl.Flows) != 1 || fl.Flows[0].Keepalives != 1 {
				t.Fatalf("tcp flow: %+v", fl)
			}
			if code := e.call("DELETE", fmt.Sprintf("/api/v1/flows/%d", fl.Flows[0].ID), nil, "", nil); code != 200 {
				t.Fatalf("close tcp flow: %d", code)
			}
			if _, err := c.Read(pong); err == nil {
				t.Errorf("tcp connection still open after close")
			}

			// Remove: by contact, by instance + reg-id, then the rest.
			var rm struct {
				AOR     string                 `json:"aor"`
				Removed []adminapi.BindingJSON `json:"removed"`
			}
			e.call("DELETE", "/api/v1/registrations", url.Values{"aor": {"sip:bob@127.0.0.1"}, "contact": {"<sip:bob2@192.0.2.9:5060>"}}, "", &rm)
			if len(rm.Removed) != 1 || rm.Removed[0].Contact != "sip:bob2@192.0.2.9:5060" {
				t.Errorf("rm by contact: %+v", rm)
			}
			e.call("DELETE", "/api/v1/registrations", url.Values{"aor": {"sip:alice@127.0.0.1"}, "instance": {"<urn:uuid:00000000-0000-0000-0000-0000000000a1>"}, "reg_id": {"2"}}, "", &rm)
			if len(rm.Removed) != 0 {
				t.Errorf("rm by other reg-id removed %+v", rm)
			}
			e.call("DELETE", "/api/v1/registrations", url.Values{"aor": {"sip:alice@127.0.0.1"}, "instance": {"<urn:uuid:00000000-0000-0000-0000-0000000000a1>"}, "reg_id": {"1"}}, "", &rm)
			if len(rm.Removed) != 1 {
				t.Errorf("rm by instance+reg-id: %+v", rm)
			}
			if code := e.call("DELETE", "/api/v1/registrations", url.Values{"aor": {"sip:bob@127.0.0.1"}, "reg_id": {"1"}}, "", nil); code != 400 {
				t.Errorf("reg_id without instance: %d, want 400", code)
			}
			e.call("DELETE", "/api/v1/registrations", url.Values{"aor": {"sip:bob@127.0.0.1"}}, "", &rm)
			if len(rm.Removed) != 1 {
				t.Errorf("rm all: %+v", rm)
			}
			// Counts follow.
			var st adminapi.Status
			e.call("GET", "/api/v1/status", nil, "", &st)
			if st.Counts.Bindings == nil || *st.Counts.Bindings != 0 || st.Counts.AORs == nil || *st.Counts.AORs != 0 {
				t.Errorf("status counts after removal: %+v", st.Counts)
			}
			if n, _ := e.reg.CountBindings(context.Background()); n != 0 {
				t.Errorf("store still counts %d bindings", n)
			}
		})
	}
}

// TestAPIStatusExplainAndErrors covers status, explain and the error
// answers.
func TestAPIStatusExplainAndErrors(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b.new(t), nil)
			u := e.newUA()
			if code := e.register(u, "carol", ""); code != 200 {
				t.Fatalf("REGISTER: %d", code)
			}
			var st adminapi.Status
			if code := e.call("GET", "/api/v1/status", nil, "", &st); code != 200 {
				t.Fatalf("status: %d", code)
			}
			if strings.Join(st.Roles, ",") != "edge,registrar" || st.Version != "test" || !st.Ready ||
				*st.Counts.Bindings != 1 || *st.Counts.AORs != 1 || st.Counts.Flows["udp"] < 1 ||
				st.Store == nil || !st.Store.OK || len(st.Registrars) != 1 || st.Auth == nil || *st.Auth {
				t.Errorf("status = %+v", st)
			}

			reg := "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx\r\nMax-Forwards: 70\r\n" +
				"To: <sip:carol@127.0.0.1>\r\nFrom: <sip:carol@127.0.0.1>;tag=1\r\nCall-ID: ex\r\nCSeq: 1 REGISTER\r\n" +
				"Contact: <sip:carol@192.0.2.1:5060>;expires=30\r\nContent-Length: 0\r\n\r\n"
			var ex struct {
				Source   string   `json:"source"`
				Status   int      `json:"status"`
				Reason   string   `json:"reason"`
				Response []string `json:"response"`
				Steps    []string `json:"steps"`
			}
			if code := e.call("POST", "/api/v1/explain", url.Values{"source": {"udp:192.0.2.1:5060"}}, reg, &ex); code != 200 {
				t.Fatalf("explain: %d", code)
			}
			if ex.Status != 423 || ex.Reason != "interval_too_brief" || ex.Response[0] != "SIP/2.0 423 Interval Too Brief" ||
				!strings.Contains(ex.Steps[len(ex.Steps)-1], "contact 1: expires 30 < min 60 → 423") {
				t.Errorf("explain = %+v", ex)
			}
			ok := strings.Replace(reg, "expires=30", "expires=300", 1)
			e.call("POST", "/api/v1/explain", nil, ok, &ex)
			if ex.Status != 200 || ex.Source != adminapi.DefaultExplainSource {
				t.Errorf("explain accepted = %+v", ex)
			}
			var got bindingsResp
			e.call("GET", "/api/v1/registrations", url.Values{"aor": {"sip:carol@127.0.0.1"}}, "", &got)
			if len(got.Bindings) != 1 {
				t.Errorf("explain wrote the store: %+v", got.Bindings)
			}
			for _, tc := range []struct {
				method, path string
				q            url.Values
				body         string
				code         int
			}{
				{"POST", "/api/v1/explain", url.Values{"source": {"udp:nowhere"}}, reg, 400},
				{"POST", "/api/v1/explain", url.Values{"source": {"smtp:192.0.2.1:25"}}, reg, 400},
				{"POST", "/api/v1/explain", nil, "INVITE sip:x@127.0.0.1 SIP/2.0\r\n\r\n", 400},
				{"POST", "/api/v1/explain", nil, "garbage", 400},
				{"DELETE", "/api/v1/bans", url.Values{"address": {"not-an-ip"}}, "", 400},
				{"DELETE", "/api/v1/bans", url.Values{"address": {"192.0.2.1"}}, "", 404}, // auth off
				{"GET", "/api/v1/nothing", nil, "", 404},
				{"PUT", "/api/v1/registrations", nil, "", 405},
				{"DELETE", "/api/v1/flows/abc", nil, "", 400},
			} {
				var er map[string]string
				if code := e.call(tc.method, tc.path, tc.q, tc.body, &er); code != tc.code || er["error"] == "" {
					t.Errorf("%s %s %v: %d %v, want %d with an error", tc.method, tc.path, tc.q, code, er, tc.code)
				}
			}
		})
	}
}

// TestAPIRoleAbsent: endpoints of a role that does not run here are 404.
func TestAPIRoleAbsent(t *testing.T) {
	api := adminapi.New(adminapi.Options{Logger: quiet()})
	e := &env{t: t}
	e.http = httpServer(t, api)
	for _, p := range []string{"/api/v1/registrations?aor=sip:a@b", "/api/v1/flows", "/api/v1/bans"} {
		var er map[string]string
		if code := e.call("GET", p, nil, "", &er); code != 404 || !strings.Contains(er["error"], "not running") {
			t.Errorf("GET %s: %d %v", p, code, er)
		}
	}
	var st adminapi.Status
	if code := e.call("GET", "/api/v1/status", nil, "", &st); code != 200 || len(st.Roles) != 0 {
		t.Errorf("status without roles: %d %+v", code, st)
	}
}
