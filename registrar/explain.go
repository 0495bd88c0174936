package registrar

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Explanation is the outcome of Explain: what the registrar would answer a
// REGISTER, and why.
type Explanation struct {
	// Status and Reason of the final response, e.g. 423 "interval_too_brief"
	// or 200 "registered".
	Status int    `json:"status"`
	Reason string `json:"reason"`
	// Response is the status line and the header lines of the answer.
	Response []string `json:"response"`
	// Steps are the decisions in order, the last one giving the outcome.
	Steps []string `json:"steps"`
	// Bindings is the AOR's binding set the answer reports (after the
	// change, which was not written).
	Bindings []Binding `json:"bindings,omitempty"`
}

// Explain runs the REGISTER policy on req as if it came from src, without
// writing the store, consuming a nonce count, counting an auth failure, or
// touching metrics. It answers "why did my phone get 423/403/439". The
// error is non-nil only when the store cannot be read.
func (r *Registrar) Explain(ctx context.Context, req *sip.Request, src Source) (Explanation, error) {
	tr := &trace{isDry: true}
	res, rej := r.register(ctx, req, src, tr, nil)
	var ex Explanation
	if rej != nil {
		res = rejectResponse(req, rej)
		step := rej.Reason
		if rej.Detail != "" {
			step += ": " + rej.Detail
		}
		tr.step("%s → %d", step, rej.Code)
		ex.Reason = rej.Reason
	} else {
		ex.Reason = tr.outcome
		ex.Bindings = tr.bindings
	}
	ex.Status = res.StatusCode
	ex.Steps = tr.steps
	ex.Response = responseLines(res)
	if rej != nil && rej.Reason == "store_unavailable" {
		return ex, fmt.Errorf("explain: %w", ErrUnavailable)
	}
	return ex, nil
}

// ParseRegister parses a raw REGISTER (as captured) for Explain, with the
// server's own parser (Contact values are parsed by the registrar).
func ParseRegister(raw []byte) (*sip.Request, error) {
	// A capture pasted from a terminal may use bare LF line ends.
	if !strings.Contains(string(raw), "\r\n") {
		raw = []byte(strings.ReplaceAll(string(raw), "\n", "\r\n"))
	}
	if !strings.Contains(string(raw), "\r\n\r\n") {
		raw = append(raw, "\r\n"...)
	}
	msg, err := NewParser().ParseSIP(raw)
	if err != nil {
		return nil, fmt.Errorf("parse REGISTER: %w", err)
	}
	req, ok := msg.(*sip.Request)
	if !ok || req.Method != sip.REGISTER {
		return nil, errors.New("parse REGISTER: not a REGISTER request")
	}
	return req, nil
}

func responseLines(res *sip.Response) []string {
	lines := []string{res.StartLine()}
	for _, h := range res.Headers() {
		lines = append(lines, h.Name()+": "+h.Value())
	}
	return lines
}

// trace records Explain's decisions. A nil *trace records nothing and is
// not dry: that is the path of every real REGISTER.
type trace struct {
	isDry    bool
	steps    []string
	outcome  string
	bindings []Binding
}

func (t *trace) dry() bool { return t != nil && t.isDry }

func (t *trace) step(format string, args ...any) {
	if t == nil {
		return
	}
	t.steps = append(t.steps, fmt.Sprintf(format, args...))
}

// accepted records a 2xx outcome.
func (t *trace) accepted(reason string, bs []Binding) {
	if t == nil {
		return
	}
	t.outcome, t.bindings = reason, CloneBindings(bs)
	t.step("%s: %d binding(s) in the answer → 200", reason, len(bs))
}

// contacts records the per-Contact decisions of evaluateContacts.
func (t *trace) contacts(cs []contactReq, outbound bool) {
	if t == nil {
		return
	}
	for i, c := range cs {
		s := "contact " + strconv.Itoa(i+1) + " <" + c.spec.URIText + ">: "
		if c.granted == 0 {
			s += "remove"
		} else {
			s += "grant " + strconv.FormatInt(int64(c.granted.Seconds()), 10) + "s"
		}
		switch {
		case c.outbound:
			s += ", outbound instance " + c.instance + " reg-id " + strconv.FormatInt(c.regID, 10)
		case c.instance != "":
			s += ", instance " + c.instance
		}
		t.step("%s", s)
	}
	if outbound {
		t.step("outbound (RFC 5626 §6) applies")
	}
}

// dryApply is Store.Update without the write: the current bindings merged
// with the request by the same pure apply.
func (r *Registrar) dryApply(ctx context.Context, in updateInput, tr *trace) ([]Binding, error) {
	cur, err := r.store.Get(ctx, in.aor)
	if err != nil {
		return nil, err
	}
	next, err := r.apply(in, CloneBindings(cur))
	if errors.Is(err, errRetransmit) {
		tr.step("store: a retransmission of the request that wrote the current bindings")
		return cur, nil
	}
	if err != nil {
		return nil, err
	}
	next = LiveBindings(next, in.now)
	tr.step("store: %d binding(s) now, %d after (dry run: nothing written)", len(cur), len(next))
	return next, nil
}
