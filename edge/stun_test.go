package edge

import (
	"github.com/pinhole-sip/pinhole/internal/sock"
	"strings"

	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v2"
)

func bindingRequest(t testing.TB, extra ...stun.Setter) *stun.Message {
	t.Helper()
	setters := append([]stun.Setter{stun.TransactionID, stun.BindingRequest}, extra...)
	m, err := stun.Build(setters...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestIsSTUN(t *testing.T) {
	req := bindingRequest(t)
	bad := append([]byte(nil), req.Raw...)
	bad[4] ^= 0xff
	tests := []struct {
		name string
		b    []byte
		want bool
	}{
		{"RFC5389-6 binding request", req.Raw, true},
		{"RFC5389-6 with fingerprint", bindingRequest(t, stun.Fingerprint).Raw, true},
		{"RFC5389-6 wrong cookie", bad, false},
		{"RFC5389-6 length mismatch", append(append([]byte(nil), req.Raw...), 0, 0, 0, 0), false},
		{"RFC5626-4.4.2 SIP request", []byte(sipMsg("REGISTER", "")), false},
		{"RFC5626-4.4.2 SIP response", []byte("SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"), false},
		{"RFC5626-4.4.1 CRLFCRLF", []byte("\r\n\r\n"), false},
		{"short", []byte{0, 1, 0, 0}, false},
		{"empty", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsSTUN(tc.b); got != tc.want {
				t.Errorf("IsSTUN = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSTUNBindingResponse(t *testing.T) {
	tests := []struct {
		name   string
		req    *stun.Message
		from   netip.AddrPort
		wantFP bool
		want   netip.AddrPort
	}{
		{"RFC5389-15.2 IPv4 without FINGERPRINT", bindingRequest(t), netip.MustParseAddrPort("192.0.2.7:40000"), false, netip.MustParseAddrPort("192.0.2.7:40000")},
		{"RFC5389-15.5 IPv4 with FINGERPRINT", bindingRequest(t, stun.Fingerprint), netip.MustParseAddrPort("203.0.113.9:5060"), true, netip.MustParseAddrPort("203.0.113.9:5060")},
		{"RFC5389-15.2 IPv6", bindingRequest(t, stun.Fingerprint), netip.MustParseAddrPort("[2001:db8::1]:6000"), true, netip.MustParseAddrPort("[2001:db8::1]:6000")},
		{"RFC5389-15.2 IPv4-mapped IPv6 reported as IPv4", bindingRequest(t), netip.MustParseAddrPort("[::ffff:198.51.100.1]:1234"), false, netip.MustParseAddrPort("198.51.100.1:1234")},
		{"RFC5389-7.3 optional unknown attribute ignored", bindingRequest(t, rawAttr{0x8055, []byte{1, 2, 3, 4}}), netip.MustParseAddrPort("192.0.2.1:1"), false, netip.MustParseAddrPort("192.0.2.1:1")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := STUNBindingResponse(tc.req.Raw, tc.from)
			if err != nil {
				t.Fatal(err)
			}
			m := &stun.Message{Raw: raw}
			if err := m.Decode(); err != nil {
				t.Fatal(err)
			}
			if m.Type != stun.BindingSuccess {
				t.Fatalf("type = %v", m.Type)
			}
			if m.TransactionID != tc.req.TransactionID {
				t.Error("transaction ID differs")
			}
			var xa stun.XORMappedAddress
			if err := xa.GetFrom(m); err != nil {
				t.Fatal(err)
			}
			ip, _ := netip.AddrFromSlice(xa.IP)
			if got := netip.AddrPortFrom(ip.Unmap(), uint16(xa.Port)); got != tc.want {
				t.Errorf("XOR-MAPPED-ADDRESS = %v, want %v", got, tc.want)
			}
			if got := m.Contains(stun.AttrFingerprint); got != tc.wantFP {
				t.Errorf("FINGERPRINT present = %v, want %v", got, tc.wantFP)
			}
			if tc.wantFP {
				if err := stun.Fingerprint.Check(m); err != nil {
					t.Errorf("fingerprint: %v", err)
				}
			}
		})
	}
}

type rawAttr struct {
	t stun.AttrType
	v []byte
}

func (a rawAttr) AddTo(m *stun.Message) error { m.Add(a.t, a.v); return nil }

func TestSTUNBindingResponseErrors(t *testing.T) {
	from := netip.MustParseAddrPort("192.0.2.1:5060")
	t.Run("RFC5389-7.3.1 unknown comprehension-required attribute gets 420", func(t *testing.T) {
		req := bindingRequest(t, rawAttr{0x0077, []byte{0, 0, 0, 0}})
		raw, err := STUNBindingResponse(req.Raw, from)
		if err != nil {
			t.Fatal(err)
		}
		m := &stun.Message{Raw: raw}
		if err := m.Decode(); err != nil {
			t.Fatal(err)
		}
		var code stun.ErrorCodeAttribute
		if err := code.GetFrom(m); err != nil || code.Code != stun.CodeUnknownAttribute {
			t.Fatalf("error code = %v, %v", code, err)
		}
		var ua stun.UnknownAttributes
		if err := ua.GetFrom(m); err != nil || len(ua) != 1 || ua[0] != 0x0077 {
			t.Fatalf("UNKNOWN-ATTRIBUTES = %v, %v", ua, err)
		}
	})
	badFP := bindingRequest(t, stun.Fingerprint)
	badFP.Raw[len(badFP.Raw)-1] ^= 1
	resp, _ := stun.Build(stun.TransactionID, stun.BindingSuccess)
	tests := []struct {
		name string
		b    []byte
	}{
		{"RFC5389-15.5 bad FINGERPRINT dropped", badFP.Raw},
		{"RFC5389-7.3 response is not answered", resp.Raw},
		{"SIP bytes", []byte(sipMsg("OPTIONS", ""))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := STUNBindingResponse(tc.b, from); err == nil {
				t.Fatal("want error")
			}
		})
	}
}

func FuzzSTUNBindingResponse(f *testing.F) {
	f.Add(bindingRequest(f).Raw)
	f.Add(bindingRequest(f, stun.Fingerprint).Raw)
	f.Add([]byte("\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		resp, err := STUNBindingResponse(b, netip.MustParseAddrPort("[2001:db8::2]:9"))
		if err == nil && !IsSTUN(resp) {
			t.Fatalf("response is not STUN: %x", resp)
		}
	})
}

// TestPacketConn uses real UDP sockets: keep-alives are answered and absorbed
// (RFC 5626 §4.4.2, §5.4), SIP is returned with its source address.
func TestPacketConn(t *testing.T) {
	tests := []struct {
		name     string
		crlfPong bool
	}{
		{"RFC5626-4.4.1 no CRLF pong by default", false},
		{"CRLF pong when configured", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sock, err := sock.ListenUDP("127.0.0.1:0", sock.Options{Readers: 1})
			if err != nil {
				t.Fatal(err)
			}
			var kas, acts atomic.Int32
			pc := NewPacketConn(sock, PacketOptions{
				CRLFPong:    tc.crlfPong,
				OnKeepalive: func(netip.AddrPort) { kas.Add(1) },
				OnActivity:  func(netip.AddrPort) { acts.Add(1) },
			})
			defer pc.Close()
			client, err := net.DialUDP("udp", nil, sock.LocalAddr().(*net.UDPAddr))
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			client.SetDeadline(time.Now().Add(testTimeout))

			type got struct {
				b    []byte
				from net.Addr
				err  error
			}
			out := make(chan got, 4)
			go func() {
				buf := make([]byte, 2048)
				for {
					n, from, err := pc.ReadFrom(buf)
					out <- got{append([]byte(nil), buf[:n]...), from, err}
					if err != nil {
						return
					}
				}
			}()

			req := bindingRequest(t, stun.Fingerprint)
			for _, b := range [][]byte{req.Raw, []byte("\r\n\r\n"), {0xff, 0, 1}, []byte(sipMsg("OPTIONS", ""))} {
				if _, err := client.Write(b); err != nil {
					t.Fatal(err)
				}
			}
			// STUN answer arrives first, from the SIP socket itself.
			buf := make([]byte, 1500)
			n, err := client.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			m := &stun.Message{Raw: buf[:n]}
			if err := m.Decode(); err != nil || m.TransactionID != req.TransactionID {
				t.Fatalf("stun response: %v", err)
			}
			var xa stun.XORMappedAddress
			if err := xa.GetFrom(m); err != nil {
				t.Fatal(err)
			}
			if want := client.LocalAddr().(*net.UDPAddr); !xa.IP.Equal(want.IP) || xa.Port != want.Port {
				t.Errorf("mapped %v, want %v", xa, want)
			}
			if tc.crlfPong {
				n, err := client.Read(buf)
				if err != nil || string(buf[:n]) != "\r\n" {
					t.Fatalf("pong = %q, %v", buf[:n], err)
				}
			}
			// Junk is returned (sipgo drops it after parsing), never an error.
			for _, want := range []string{"\xff\x00\x01", sipMsg("OPTIONS", "")} {
				select {
				case g := <-out:
					if g.err != nil || string(g.b) != want {
						t.Fatalf("ReadFrom = %q, %v; want %q", g.b, g.err, want)
					}
					if g.from.String() != client.LocalAddr().String() {
						t.Errorf("from = %v", g.from)
					}
				case <-time.After(testTimeout):
					t.Fatal("timeout")
				}
			}
			if kas.Load() != 2 || acts.Load() != 2 {
				t.Errorf("keepalives=%d activity=%d, want 2 and 2", kas.Load(), acts.Load())
			}
			pc.Close()
			g := <-out
			if !errors.Is(g.err, net.ErrClosed) {
				t.Errorf("after close: %v", g.err)
			}
		})
	}
}

// TestPacketConnChecksDatagramsLongerThanTheBuffer: a datagram longer than
// the reader's buffer (sipgo's, internal/siptune) arrives as a Handoff
// token, yet the check sees it whole: a refused one is answered and never
// returned, an accepted one is returned as a token that swaps back to the
// (normalised) whole datagram.
func TestPacketConnChecksDatagramsLongerThanTheBuffer(t *testing.T) {
	h := sock.NewHandoff()
	sc, err := sock.ListenUDP("127.0.0.1:0", sock.Options{Readers: 1, Handoff: h})
	if err != nil {
		t.Fatal(err)
	}
	pad := "X-Pad: " + strings.Repeat("p", 3000) + "\r\n"
	bad := "OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nCall-ID: one\r\nCall-ID: two\r\n" + pad + "\r\n"
	good := "OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nCall-ID: one\r\n" + pad + "\r\n"
	var seen []int
	pc := NewPacketConn(sc, PacketOptions{
		Check: func(b []byte, _ netip.AddrPort) ([]byte, []byte, bool) {
			seen = append(seen, len(b))
			if strings.Count(string(b), "Call-ID:") > 1 {
				return nil, []byte("SIP/2.0 400 Bad Request\r\n\r\n"), false
			}
			return append([]byte("NORMALISED "), b...), nil, true
		},
	})
	defer pc.Close()
	client, err := net.DialUDP("udp", nil, sc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	client.SetDeadline(time.Now().Add(testTimeout))
	for _, m := range []string{bad, good} {
		if _, err := client.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 2048)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(h.Swap(buf[:n])); got != "NORMALISED "+good {
		t.Errorf("returned %d bytes (%.40q), want the whole normalised good datagram", len(got), got)
	}
	if len(seen) != 2 || seen[0] != len(bad) || seen[1] != len(good) {
		t.Errorf("check saw %v bytes, want [%d %d] (whole datagrams)", seen, len(bad), len(good))
	}
	reply := make([]byte, 1500)
	if n, err := client.Read(reply); err != nil || !strings.HasPrefix(string(reply[:n]), "SIP/2.0 400") {
		t.Errorf("reply to the refused datagram: %q, %v", reply[:n], err)
	}
}
