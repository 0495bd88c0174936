package location

import (
	"fmt"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/pinhole-sip/pinhole/registrar"
)

func resp(code int) *sip.Response {
	if code == 0 {
		return nil
	}
	return sip.NewResponse(code, "")
}

// TestRFC3261_16_6_PlanTargets: plain bindings fork by q (unspecified =
// 1.0), RFC 5626 instances become one target whose flows are ordered by
// reg-id (RFC 5626 §5.3), different instances fork in parallel.
func TestRFC3261_16_6_PlanTargets(t *testing.T) {
	plain := func(key string, q int) registrar.Binding {
		return registrar.Binding{Key: key, Contact: "sip:" + key, Q: q}
	}
	ob := func(inst string, regID int64, q int) registrar.Binding {
		return registrar.Binding{Key: fmt.Sprintf("outbound:%s:%d", inst, regID), Instance: inst, RegID: regID, Q: q}
	}
	tests := []struct {
		name string
		in   []registrar.Binding
		want string
	}{
		{"empty", nil, ""},
		{"q groups", []registrar.Binding{plain("c", 500), plain("a", 1000), plain("b", -1), plain("d", 100)}, "[a|b] [c] [d]"},
		{"outbound flows by reg-id", []registrar.Binding{ob("i1", 2, -1), ob("i1", 1, -1), ob("i2", 1, -1)},
			"[outbound:i1:1>outbound:i1:2|outbound:i2:1]"},
		{"mixed", []registrar.Binding{ob("i1", 1, 700), plain("p", -1), ob("i1", 3, 700)}, "[p] [outbound:i1:1>outbound:i1:3]"},
		{"reg-id without instance is plain", []registrar.Binding{{Key: "x", RegID: 1, Q: -1}, {Key: "y", RegID: 2, Q: -1}}, "[x|y]"},
		{"out-of-range q counts as 1.0", []registrar.Binding{plain("a", 2000), plain("b", 1000)}, "[a|b]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			for i, w := range planTargets(tc.in) {
				if i > 0 {
					got += " "
				}
				got += "["
				for j, tg := range w {
					if j > 0 {
						got += "|"
					}
					for k, f := range tg.flows {
						if k > 0 {
							got += ">"
						}
						got += f.Key
					}
				}
				got += "]"
			}
			if got != tc.want {
				t.Fatalf("plan = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestRFC3261_16_7_Better: lowest class wins; a specific answer beats
// the generic ones within a class.
func TestRFC3261_16_7_Better(t *testing.T) {
	tests := []struct{ cur, res, want int }{
		{0, 486, 486}, {486, 302, 302}, {302, 486, 302}, {480, 486, 486}, {486, 480, 486},
		{503, 500, 500}, {408, 480, 408}, {404, 486, 404},
	}
	for _, tc := range tests {
		got := better(resp(tc.cur), resp(tc.res)).StatusCode
		if got != tc.want {
			t.Errorf("better(%d, %d) = %d, want %d", tc.cur, tc.res, got, tc.want)
		}
	}
}

// TestItem6_OrderPBX: priority first, then RFC 2782 weighted order; weight
// 0 only after the weighted ones.
func TestItem6_OrderPBX(t *testing.T) {
	mk := func(host string, prio, w int) pbxTarget {
		return pbxTarget{uri: sip.Uri{Scheme: "sip", Host: host}, priority: prio, weight: w}
	}
	in := []pbxTarget{mk("c", 2, 1), mk("a0", 1, 0), mk("a1", 1, 1), mk("a3", 1, 3)}
	order := func(r float64) string {
		var hs []string
		for _, u := range orderPBX(in, func() float64 { return r }) {
			hs = append(hs, u.Host)
		}
		return fmt.Sprint(hs)
	}
	// r=0 always picks the first weighted entry; r=0.99 the last.
	if got := order(0); got != "[a1 a3 a0 c]" {
		t.Errorf("r=0: %s", got)
	}
	if got := order(0.99); got != "[a3 a1 a0 c]" {
		t.Errorf("r=0.99: %s", got)
	}
}
