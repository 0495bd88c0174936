package adminapi_test

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/adminapi"
	"github.com/pinhole-sip/pinhole/internal/redistest"
	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/registrar/auth"
	"github.com/pinhole-sip/pinhole/registrar/memstore"
	"github.com/pinhole-sip/pinhole/registrar/redisstore"
)

// TestKickRacingRegisterLosesNothing: REGISTERs keep adding bindings to
// one AOR while the API kicks earlier ones by Contact. Every kick goes
// through the store's atomic update, so each kicked binding is gone and
// every other acknowledged binding is still there. On Redis the REGISTERs
// run on a second registrar node with its own store client, so the kick
// and the REGISTERs race on the compare-and-set across nodes.
func TestKickRacingRegisterLosesNothing(t *testing.T) {
	for _, b := range []string{"memory", "redis"} {
		t.Run(b, func(t *testing.T) {
			var apiStore, regStore registrar.Store
			if b == "memory" {
				s := memstore.New(nil)
				apiStore, regStore = s, s
			} else {
				srv := redistest.Start(t)
				var stores [2]registrar.Store
				for i := range stores {
					s, err := redisstore.New(redisstore.Config{URL: srv.URL(), Timeout: 5 * time.Second}, nil)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { _ = s.Close() })
					stores[i] = s
				}
				apiStore, regStore = stores[0], stores[1]
			}
			e := newEnv(t, apiStore, func(c *registrar.Config, _ *registrar.Options) { c.MaxContacts = 200 })
			cfg := registrar.Config{Domains: []string{"127.0.0.1"}, Listen: []registrar.ListenConfig{{Transport: "udp", Address: "127.0.0.1:0"}}}
			cfg.SetDefaults()
			cfg.MaxContacts = 200
			node2, err := registrar.New(cfg, regStore, registrar.Options{Logger: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			const n = 60
			acked := make(chan int, n)
			go func() {
				defer close(acked)
				src := registrar.Source{Transport: "UDP", Addr: netip.MustParseAddrPort("192.0.2.7:5060")}
				for i := range n {
					res := node2.HandleRegister(context.Background(), registerReq(t, i), src)
					if res.StatusCode != 200 {
						t.Errorf("REGISTER %d: %d", i, res.StatusCode)
						continue
					}
					acked <- i
				}
			}()
			var kept []string
			kicked := 0
			for i := range acked {
				c := fmt.Sprintf("sip:dev%02d@192.0.2.7:5060", i)
				if i%2 == 1 {
					kept = append(kept, c)
					continue
				}
				var rm struct {
					Removed []adminapi.BindingJSON `json:"removed"`
				}
				if code := e.call("DELETE", "/api/v1/registrations", url.Values{"aor": {"sip:race@127.0.0.1"}, "contact": {c}}, "", &rm); code != 200 {
					t.Fatalf("kick %s: %d", c, code)
				}
				if len(rm.Removed) != 1 || rm.Removed[0].Contact != c {
					t.Fatalf("kick %s removed %+v", c, rm.Removed)
				}
				kicked++
			}
			var got bindingsResp
			e.call("GET", "/api/v1/registrations", url.Values{"aor": {"sip:race@127.0.0.1"}}, "", &got)
			var have []string
			for _, b := range got.Bindings {
				have = append(have, b.Contact)
			}
			sort.Strings(have)
			sort.Strings(kept)
			if strings.Join(have, " ") != strings.Join(kept, " ") || kicked != n/2 {
				t.Fatalf("after %d kicks: have %d bindings %v\nwant %d %v", kicked, len(have), have, len(kept), kept)
			}
		})
	}
}

func registerReq(t *testing.T, i int) *sip.Request {
	t.Helper()
	raw := fmt.Sprintf("REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKrace%d\r\n"+
		"Max-Forwards: 70\r\nTo: <sip:race@127.0.0.1>\r\nFrom: <sip:race@127.0.0.1>;tag=r\r\nCall-ID: race-%d\r\n"+
		"CSeq: 1 REGISTER\r\nContact: <sip:dev%02d@192.0.2.7:5060>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n", i, i, i)
	req, err := registrar.ParseRegister([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestAPIBans lists and lifts bans on both auth state backends.
func TestAPIBans(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			store := b.new(t)
			var st auth.State
			if rs, ok := store.(*redisstore.Store); ok {
				st = redisstore.NewAuthState(rs.Client(), "pinhole:auth:")
			} else {
				st = memstore.NewAuthState(nil)
			}
			e := newEnv(t, store, func(c *registrar.Config, o *registrar.Options) {
				p := filepath.Join(t.TempDir(), "users.yaml")
				if err := os.WriteFile(p, []byte("users:\n  - username: alice\n    password: secret\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				users, err := loadUsersFile(p, "127.0.0.1", true)
				if err != nil {
					t.Fatal(err)
				}
				v, err := auth.New(auth.Config{Realm: "127.0.0.1", AllowPlaintext: true}, users, st, quiet(), time.Now)
				if err != nil {
					t.Fatal(err)
				}
				o.Auth, o.Users = v, users
			})
			ctx := context.Background()
			ba := st.(auth.BanAdmin)
			if err := ba.BanFor(ctx, "198.51.100.7", "alice", 11, time.Hour); err != nil {
				t.Fatal(err)
			}
			if err := ba.BanFor(ctx, "2001:db8::7", "", 51, 10*time.Minute); err != nil {
				t.Fatal(err)
			}
			type ban struct {
				Address  string    `json:"address"`
				User     string    `json:"user"`
				Until    time.Time `json:"until"`
				Failures int64     `json:"failures"`
			}
			var got struct {
				Auth bool  `json:"auth"`
				Bans []ban `json:"bans"`
			}
			if code := e.call("GET", "/api/v1/bans", nil, "", &got); code != 200 || !got.Auth || len(got.Bans) != 2 {
				t.Fatalf("bans: %d %+v", code, got)
			}
			if got.Bans[0].Address != "2001:db8::7" || got.Bans[1].Address != "198.51.100.7" || got.Bans[1].User != "alice" ||
				got.Bans[1].Failures != 11 || time.Until(got.Bans[1].Until) < 59*time.Minute {
				t.Errorf("bans = %+v", got.Bans)
			}
			var lift map[string]any
			if code := e.call("DELETE", "/api/v1/bans", url.Values{"address": {"198.51.100.7"}, "user": {"alice"}}, "", &lift); code != 200 || lift["lifted"] != true {
				t.Fatalf("lift: %d %v", code, lift)
			}
			if banned, _ := st.Banned(ctx, "198.51.100.7"); banned {
				t.Error("still banned after DELETE")
			}
			e.call("DELETE", "/api/v1/bans", url.Values{"address": {"198.51.100.7"}}, "", &lift)
			if lift["lifted"] != false {
				t.Errorf("second lift: %v", lift)
			}
			e.call("GET", "/api/v1/bans", nil, "", &got)
			if len(got.Bans) != 1 || got.Bans[0].Address != "2001:db8::7" {
				t.Errorf("bans after lift: %+v", got.Bans)
			}
			var status adminapi.Status
			e.call("GET", "/api/v1/status", nil, "", &status)
			if status.Auth == nil || !*status.Auth {
				t.Errorf("status auth = %v", status.Auth)
			}
		})
	}
}
