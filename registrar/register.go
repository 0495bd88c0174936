package registrar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/logthrottle"
	"github.com/pinhole-sip/pinhole/internal/sipproxy"
	"github.com/pinhole-sip/pinhole/routeset"
)

// Source is where a request reached the registrar from.
type Source struct {
	Transport string         // UDP, TCP, ...
	Addr      netip.AddrPort // packet source / connection peer
}

func (s Source) String() string { return strings.ToLower(s.Transport) + " " + s.Addr.String() }

// maxExpires is the largest expiry value RFC 3261 §20.19 allows; larger
// values are treated as this.
const maxExpires = math.MaxUint32

// Option tags this registrar implements (RFC 3261 §8.2.2.3, §10.3 step 2).
var supportedTags = map[string]bool{"path": true, "outbound": true}

// Rejection is one typed reason to refuse a request: the metric label,
// the log attribute and the SIP answer. The registrar's REGISTER policy and
// the location service (package location) answer with it alike.
type Rejection struct {
	Code    int
	Reason  string // metric label and log attr, e.g. interval_too_brief
	Phrase  string // SIP reason phrase
	Detail  string // for the log line only
	Headers []sip.Header
}

// Reject builds a Rejection.
func Reject(code int, reason, phrase, detail string, hdrs ...sip.Header) *Rejection {
	return &Rejection{Code: code, Reason: reason, Phrase: phrase, Detail: detail, Headers: hdrs}
}

// reject is Reject, for brevity inside the package.
var reject = Reject

// contactReq is one Contact of a REGISTER after policy evaluation.
type contactReq struct {
	spec     contactSpec
	key      string // binding identity (outbound/instance) or "" for URI matching
	instance string
	regID    int64
	q        int
	granted  time.Duration // 0 = remove
	outbound bool
}

// HandleRegister processes one REGISTER per RFC 3261 §10.3 (R3261-§10.3 in
// DESIGN.md) and returns the final response. It never panics on input and
// never returns a 2xx for a change that was not stored.
func (r *Registrar) HandleRegister(ctx context.Context, req *sip.Request, src Source) *sip.Response {
	res, _ := r.handleRegister(ctx, req, src)
	return res
}

// handleRegister is HandleRegister that also returns the rejection reason
// ("" for a 2xx), for the server's banned-source policy.
func (r *Registrar) handleRegister(ctx context.Context, req *sip.Request, src Source) (*sip.Response, string) {
	var seen *registerSeen
	if r.observer.Load() != nil {
		seen = &registerSeen{}
	}
	res, rej := r.register(ctx, req, src, nil, seen)
	if rej != nil {
		res = r.answerReject(req, src, rej)
	}
	r.observe(req, src, res, rej, seen)
	if rej != nil {
		return res, rej.Reason
	}
	return res, ""
}

func (r *Registrar) answerReject(req *sip.Request, src Source, rej *Rejection) *sip.Response {
	res := rejectResponse(req, rej)
	lvl := slog.LevelInfo
	switch {
	case rej.Code >= 500:
		lvl = slog.LevelWarn
	case rej.Reason == "auth_challenged":
		// The first leg of every authenticated registration: not news.
		lvl = slog.LevelDebug
	}
	r.log.Log(context.Background(), lvl, "REGISTER rejected",
		"status", rej.Code, "reason", rej.Reason, "detail", rej.Detail,
		"call_id", headerValue(req, "call-id"), "raddr", src.Addr.String(), "transport", src.Transport,
		logthrottle.Key(r.uaAddr(req, src).String()))
	r.metrics.register.WithLabelValues(strconv.Itoa(rej.Code), rej.Reason).Inc()
	return res
}

// rejectResponse is the SIP answer to rej.
func rejectResponse(req *sip.Request, rej *Rejection) *sip.Response {
	res := newResponse(req, rej.Code, rej.Phrase)
	for _, h := range rej.Headers {
		res.AppendHeader(h)
	}
	return res
}

// register decides one REGISTER. tr is nil for real requests; Explain
// passes a trace, which records each decision and makes the run dry (no
// store write, no nonce count, no failure count, no metrics). seen, when
// not nil, records what the decision parsed for the observer (observe.go).
func (r *Registrar) register(ctx context.Context, req *sip.Request, src Source, tr *trace, seen *registerSeen) (*sip.Response, *Rejection) {
	now := r.now()

	// Mandatory headers (RFC 3261 §8.1.1). sipgo already rejects a
	// request without Via or CSeq.
	to, from, callID, cseq := req.To(), req.From(), req.CallID(), req.CSeq()
	if to == nil || from == nil || callID == nil || cseq == nil || string(*callID) == "" {
		return nil, reject(400, "missing_header", "Missing Mandatory Header", "To, From, Call-ID or CSeq missing")
	}
	if cseq.MethodName != sip.REGISTER {
		return nil, reject(400, "cseq_method", "CSeq Method Mismatch", string(cseq.MethodName))
	}

	// §10.3 step 1: the Request-URI names a domain we serve; we never forward.
	if s := strings.ToLower(req.Recipient.Scheme); s != "sip" && s != "sips" {
		return nil, reject(416, "unsupported_uri_scheme", "Unsupported URI Scheme", req.Recipient.Scheme)
	}
	if !r.servesHost(req.Recipient.Host) {
		return nil, reject(404, "domain_not_served", "Domain Not Served", req.Recipient.Host)
	}
	if tr != nil { // the arguments would be boxed even for a nil trace
		tr.step("domain %s served", req.Recipient.Host)
	}

	// §10.3 step 2: Require.
	if unsup := r.unsupportedTags(headerValues(req, "require")); len(unsup) > 0 {
		return nil, reject(420, "bad_extension", "Bad Extension", strings.Join(unsup, ","),
			sip.NewHeader("Unsupported", strings.Join(unsup, ", ")))
	}
	supported := supportedExtensions(req)

	// §10.3 step 5: the AOR from To, canonicalised, in a served domain.
	if s := strings.ToLower(to.Address.Scheme); s != "sip" && s != "sips" {
		return nil, reject(404, "aor_not_sip", "Not Found", "To is not a SIP URI")
	}
	if !r.servesHost(to.Address.Host) {
		return nil, reject(404, "aor_domain_not_served", "Not Found", to.Address.Host)
	}
	aor := CanonicalAOR(&to.Address)
	seen.setAOR(aor)
	if tr != nil {
		tr.step("aor %s", aor)
	}

	// Steps 3 and 4 (authentication and authorisation) hook in here.
	authInfo, rej := r.authorize(ctx, req, src, aor, tr)
	if rej != nil {
		return nil, rej
	}

	// Path (RFC 3327): only from trusted edges.
	paths := headerValues(req, "path")
	if len(paths) > 0 {
		if !r.trustedEdge(src.Addr.Addr()) {
			return nil, reject(403, "path_untrusted", "Path Not Allowed", src.Addr.String())
		}
		if !supported.path && r.cfg.PathMode == "strict" {
			return nil, reject(420, "path_unsupported", "Bad Extension", "Path without Supported: path (path_mode strict)",
				sip.NewHeader("Unsupported", "path"))
		}
	}
	pathVec, err := splitList(paths)
	if err != nil {
		return nil, reject(400, "bad_path", "Bad Path", err.Error())
	}

	// Expires header (§20.19).
	var hdrExpires *uint64
	if vals := headerValues(req, "expires"); len(vals) > 0 {
		if len(vals) > 1 {
			return nil, reject(400, "bad_expires", "Bad Expires", "more than one Expires header")
		}
		v, ok := parseDelta(vals[0])
		if !ok {
			return nil, reject(400, "bad_expires", "Bad Expires", vals[0])
		}
		hdrExpires = &v
	}

	contacts, err := parseContacts(headerValues(req, "contact"))
	if err != nil {
		return nil, reject(400, "bad_contact", "Bad Contact", err.Error())
	}
	seen.setContacts(contacts, hdrExpires)

	in := updateInput{
		now: now, aor: aor, callID: string(*callID), cseq: cseq.SeqNo,
		path: pathVec, source: src.String(), userAgent: headerValue(req, "user-agent"),
	}

	// Step 6: wildcard.
	wildcard := false
	for _, c := range contacts {
		if c.Wildcard {
			wildcard = true
		}
	}
	if wildcard {
		if len(contacts) != 1 {
			return nil, reject(400, "wildcard_misuse", "Bad Contact", "'*' with other Contacts")
		}
		if hdrExpires == nil || *hdrExpires != 0 {
			return nil, reject(400, "wildcard_misuse", "Bad Contact", "'*' requires Expires: 0")
		}
		in.wildcard = true
	}

	outboundApplies := false
	if !wildcard && len(contacts) > 0 {
		reqs, obApplied, rej := r.evaluateContacts(req, contacts, hdrExpires, supported, pathVec)
		if rej != nil {
			return nil, rej
		}
		in.contacts = reqs
		seen.setGranted(reqs)
		outboundApplies = obApplied
		tr.contacts(reqs, obApplied)
	}

	// Step 7 and 8: one atomic update (or a plain read for a fetch).
	var bindings []Binding
	sctx := ctx
	if !r.storeLocal {
		var cancel context.CancelFunc
		sctx, cancel = context.WithTimeout(ctx, r.cfg.StoreTimeout)
		defer cancel()
	}
	start := time.Now()
	op := "update"
	switch {
	case len(contacts) == 0:
		op = "get"
		bindings, err = r.store.Get(sctx, aor)
	case tr.dry():
		bindings, err = r.dryApply(sctx, in, tr)
	default:
		bindings, err = r.store.Update(sctx, aor, func(cur []Binding) ([]Binding, error) {
			return r.apply(in, cur)
		})
	}
	if !tr.dry() {
		r.metrics.storeLatency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	}
	switch {
	case err == nil:
	case errors.Is(err, errRetransmit):
		// A retransmitted REGISTER (same Call-ID and CSeq) that reached us
		// outside its transaction: answer with the current state.
		bindings, err = r.store.Get(sctx, aor)
		if err != nil {
			return nil, r.unavailable(err)
		}
	case errors.Is(err, errOutOfOrder):
		return nil, reject(400, "out_of_order", "Out of Order CSeq", err.Error())
	case errors.Is(err, errTooMany):
		return nil, reject(403, "too_many_contacts", "Too Many Contacts", fmt.Sprintf("max_contacts %d", r.cfg.MaxContacts))
	default:
		return nil, r.unavailable(err)
	}

	reason := "registered"
	switch {
	case len(contacts) == 0:
		reason = "fetched"
	case in.wildcard || removalOnly(in.contacts):
		reason = "unregistered"
	}
	tr.accepted(reason, bindings)
	if !tr.dry() {
		r.metrics.register.WithLabelValues("200", reason).Inc()
	}
	if r.log.Enabled(ctx, slog.LevelDebug) { // building the attributes costs five allocations
		r.log.Debug("REGISTER accepted", "dry_run", tr.dry(), "aor", aor, "reason", reason, "bindings", len(bindings),
			"call_id", in.callID, "raddr", src.Addr.String(), "transport", src.Transport)
	}
	var granted time.Duration
	for _, c := range in.contacts {
		granted = max(granted, c.granted)
	}
	infoName, infoValue := r.authInfo(authInfo, granted)
	seen.setAnswer(now, bindings, infoValue)
	return r.okResponse(req, now, bindings, supported, pathVec, outboundApplies, infoName, infoValue, aor, src.Transport), nil
}

// removalOnly reports whether every Contact of the request asked for
// expiry 0.
func removalOnly(cs []contactReq) bool {
	for _, c := range cs {
		if c.granted != 0 {
			return false
		}
	}
	return len(cs) > 0
}

func (r *Registrar) unavailable(err error) *Rejection {
	lo, hi := int(r.cfg.RetryAfterMin/time.Second), int(r.cfg.RetryAfterMax/time.Second)
	ra := lo + r.randN(hi-lo+1)
	return reject(503, "store_unavailable", "Service Unavailable", err.Error(),
		sip.NewHeader("Retry-After", strconv.Itoa(ra)))
}

// evaluateContacts applies the per-Contact rules that do not depend on the
// stored state: expiry precedence and 423 (§10.3 step 7), q-values, and
// RFC 5626 §6 outbound rules.
func (r *Registrar) evaluateContacts(req *sip.Request, contacts []contactSpec, hdrExpires *uint64,
	supported extensions, pathVec []string) ([]contactReq, bool, *Rejection) {

	out := make([]contactReq, 0, len(contacts))
	nonZero, withRegID := 0, false
	var minNeeded time.Duration
	tooBrief := ""
	outboundApplies := false
	for n, c := range contacts {
		cr := contactReq{spec: c, q: -1}
		// Expiry precedence: Contact expires > Expires header > default.
		var requested uint64
		if v, ok := c.get("expires"); ok {
			d, ok := parseDelta(v)
			if !ok {
				return nil, false, reject(400, "bad_expires", "Bad Expires", "Contact expires="+v)
			}
			requested = d
		} else if hdrExpires != nil {
			requested = *hdrExpires
		} else {
			requested = uint64(r.cfg.Expires.Default / time.Second)
		}
		if v, ok := c.get("q"); ok {
			q, ok := parseQ(v)
			if !ok {
				return nil, false, reject(400, "bad_q", "Bad Contact", "q="+v)
			}
			cr.q = q
		}
		if v, ok := c.get("+sip.instance"); ok {
			if v == "" || len(v) > 256 {
				return nil, false, reject(400, "bad_instance", "Bad Contact", "+sip.instance")
			}
			cr.instance = v
		}
		if v, ok := c.get("reg-id"); ok {
			id, err := strconv.ParseInt(v, 10, 64)
			// RFC 5626 §4.2 / ABNF: reg-id = 1*DIGIT, 1 .. 2^31-1.
			if err != nil || id < 1 || id > math.MaxInt32 {
				return nil, false, reject(400, "bad_reg_id", "Bad Contact", "reg-id="+v)
			}
			cr.regID = id
		}
		if c.URI.UriParams.Has("gr") {
			// RFC 5627 §5.1: a GRUU must not be registered as a Contact.
			return nil, false, reject(403, "gruu_as_contact", "Contact Is A GRUU", c.URIText)
		}
		// RFC 5626 §6: reg-id without Supported: outbound or without
		// +sip.instance is ignored (plain binding).
		if cr.regID != 0 && supported.outbound && cr.instance != "" {
			cr.outbound = true
			withRegID = true
		} else {
			cr.regID = 0
		}
		switch {
		case cr.outbound:
			cr.key = "ob:" + cr.instance + ":" + strconv.FormatInt(cr.regID, 10)
		case cr.instance != "":
			// RFC 5626 §6 / RFC 5627: with an instance-id and no reg-id, the
			// instance identifies the binding, not the Contact URI.
			cr.key = "inst:" + cr.instance
		}
		if requested > 0 {
			nonZero++
			floor := r.cfg.Expires.Min
			if cr.outbound {
				floor = r.cfg.Expires.MinOutbound
			}
			// §10.3 step 7 / §21.4.17: 423 only when below min and below 1h.
			if requested < uint64(floor/time.Second) && requested < 3600 {
				if floor > minNeeded {
					minNeeded = floor
					tooBrief = fmt.Sprintf("contact %d: expires %d < min %d", n+1, requested, int64(floor/time.Second))
				}
			}
			cr.granted = r.grant(requested, floor)
		}
		out = append(out, cr)
	}
	if withRegID {
		// RFC 5626 §6: several Contacts with non-zero expiry and a reg-id → 400.
		if nonZero > 1 {
			return nil, false, reject(400, "multiple_contacts_reg_id", "Multiple Contacts With reg-id",
				fmt.Sprintf("%d Contacts with non-zero expiry, one with reg-id", nonZero))
		}
		// RFC 5626 §6: the first hop must support outbound: the bottom-most
		// Path must carry ;ob, or we are the first hop (one Via, no Path).
		if len(pathVec) > 0 {
			if !pathHasOB(pathVec[len(pathVec)-1]) {
				return nil, false, reject(439, "first_hop_no_outbound", "First Hop Lacks Outbound Support", "bottom Path without ;ob")
			}
		} else if len(req.GetHeaders("via")) > 1 {
			return nil, false, reject(439, "first_hop_no_outbound", "First Hop Lacks Outbound Support", "no Path, several Vias")
		}
		outboundApplies = true
	}
	if minNeeded > 0 {
		return nil, false, reject(423, "interval_too_brief", "Interval Too Brief", tooBrief,
			sip.NewHeader("Min-Expires", strconv.Itoa(int(minNeeded/time.Second))))
	}
	// Within one request, the last Contact for one identity wins.
	return out, outboundApplies, nil
}

// grant computes the granted expiry for a requested one: clamp to max
// (shorten, never lengthen), then jitter that only shortens and never goes
// below floor.
func (r *Registrar) grant(requested uint64, floor time.Duration) time.Duration {
	if requested > maxExpires {
		requested = maxExpires
	}
	g := time.Duration(requested) * time.Second
	if g > r.cfg.Expires.Max {
		g = r.cfg.Expires.Max
	}
	if j := r.cfg.Expires.Jitter; j > 0 && g > floor {
		cut := time.Duration(r.randFloat() * j * float64(g))
		cut = cut.Truncate(time.Second)
		if g-cut < floor {
			cut = g - floor
		}
		g -= cut
	}
	return g
}

type updateInput struct {
	now       time.Time
	aor       string
	callID    string
	cseq      uint32
	wildcard  bool
	contacts  []contactReq
	path      []string
	source    string
	userAgent string
}

// The policy errors apply returns through Store.Update, which hands them
// back unchanged.
var (
	errOutOfOrder = errors.New("CSeq not higher than the binding's for the same Call-ID")
	errTooMany    = errors.New("too many contacts for this AOR")
	errRetransmit = errors.New("retransmission")
)

// apply is the pure RFC 3261 §10.3 steps 6-8 merge of one REGISTER into the
// AOR's current bindings. It is called by Store.Update, possibly more than
// once.
func (r *Registrar) apply(in updateInput, cur []Binding) ([]Binding, error) {
	// ordered returns errOutOfOrder / errRetransmit for a binding written by
	// the same Call-ID with a CSeq that is not higher (§10.3 step 6/7).
	ordered := func(b Binding) error {
		if b.CallID != in.callID || in.cseq > b.CSeq {
			return nil
		}
		if in.cseq == b.CSeq {
			return errRetransmit
		}
		return errOutOfOrder
	}
	if in.wildcard {
		for _, b := range cur {
			if err := ordered(b); err != nil {
				if errors.Is(err, errRetransmit) {
					continue
				}
				return nil, err
			}
		}
		return nil, nil
	}

	next := make([]Binding, len(cur))
	copy(next, cur)
	index := func(key string) int {
		for i := range next {
			if next[i].Key == key {
				return i
			}
		}
		return -1
	}
	touched := make(map[string]bool, len(in.contacts))
	retransmits := 0
	for _, c := range in.contacts {
		i := -1
		key := c.key
		if key != "" {
			i = index(key)
		} else {
			for j := range next {
				if strings.HasPrefix(next[j].Key, "ob:") || strings.HasPrefix(next[j].Key, "inst:") {
					continue
				}
				var u sip.Uri
				if parseSIPURI(next[j].Contact, &u) == nil && URIEqual(&u, &c.spec.URI) {
					i = j
					break
				}
			}
			if i >= 0 {
				key = next[i].Key
			} else {
				key = contactKey(&c.spec.URI)
				i = index(key)
			}
		}
		if i >= 0 {
			if err := ordered(next[i]); err != nil {
				if errors.Is(err, errRetransmit) {
					retransmits++
					continue
				}
				return nil, err
			}
		}
		if c.granted == 0 {
			if i >= 0 {
				next = append(next[:i], next[i+1:]...)
			}
			continue
		}
		b := Binding{
			AOR: in.aor, Contact: c.spec.URIText, Key: key, Instance: c.instance, RegID: c.regID,
			Q: c.q, Expires: in.now.Add(c.granted), CallID: in.callID, CSeq: in.cseq,
			Path: in.path, Source: in.source, UserAgent: in.userAgent,
			Registered: in.now, Updated: in.now,
		}
		if i >= 0 {
			b.Registered = next[i].Registered
			next[i] = b
		} else {
			next = append(next, b)
		}
		touched[key] = true
	}
	if retransmits == len(in.contacts) && retransmits > 0 {
		return nil, errRetransmit
	}
	if len(next) > r.cfg.MaxContacts {
		if r.cfg.MaxContactsPolicy != "evict_oldest" {
			return nil, errTooMany
		}
		sort.SliceStable(next, func(a, b int) bool { return next[a].Registered.Before(next[b].Registered) })
		for i := 0; len(next) > r.cfg.MaxContacts && i < len(next); {
			if touched[next[i].Key] {
				i++
				continue
			}
			next = append(next[:i], next[i+1:]...)
		}
		if len(next) > r.cfg.MaxContacts {
			return nil, errTooMany
		}
	}
	return next, nil
}

// okResponse builds the 200 OK: every current binding with its remaining
// expires (§10.3 step 8), Date, and the extension headers.
func (r *Registrar) okResponse(req *sip.Request, now time.Time, bindings []Binding, supported extensions,
	pathVec []string, outbound bool, infoName, infoValue, aor, transport string) *sip.Response {

	res := newResponse(req, 200, "OK")
	slices.SortStableFunc(bindings, func(a, b Binding) int {
		if a.Q != b.Q {
			return b.Q - a.Q
		}
		return strings.Compare(a.Key, b.Key)
	})
	// RFC 5627 §5.3: GRUUs only for a UA that supports them, per instance.
	gruus := supported.gruu && r.gruu != nil
	to := req.To()
	for _, b := range bindings {
		v := contactValue(b, now)
		if gruus && b.Instance != "" {
			v += ";pub-gruu=" + quoteParam(pubGRUU(&to.Address, b.Instance)) +
				";temp-gruu=" + quoteParam(r.tempGRUU(aor, to.Address.Host, b.Instance, b.CallID))
		}
		res.AppendHeader(sip.NewHeader("Contact", v))
	}
	res.AppendHeader(sip.NewHeader("Date", now.UTC().Format(http1123)))
	if supported.path && len(pathVec) > 0 {
		// RFC 3327 §5.3: echo the Path vector only to a UA that supports it.
		for _, p := range pathVec {
			res.AppendHeader(sip.NewHeader("Path", p))
		}
	}
	if outbound {
		// RFC 5626 §6: Require: outbound only when outbound was applied.
		res.AppendHeader(sip.NewHeader("Require", "outbound"))
		// RFC 5626 §4.4: as the first hop (one Via, no Path) the
		// registrar itself tells the UA how often to send keep-alives.
		if len(pathVec) == 0 && len(req.GetHeaders("via")) == 1 {
			res.AppendHeader(sip.NewHeader("Flow-Timer", r.cfg.FlowTimer.Header(strings.EqualFold(transport, "UDP"))))
		}
	}
	if len(bindings) > 0 {
		// RFC 3608 §6: Service-Route in every 2xx while bindings remain.
		routes := r.cfg.ServiceRoute
		for d, list := range r.cfg.ServiceRouteDomains {
			if strings.EqualFold(d, to.Address.Host) {
				routes = list
			}
		}
		for _, sr := range routes {
			v, ok := r.serviceRoutes[sr]
			if !ok {
				v = serviceRoute(sr)
			}
			res.AppendHeader(sip.NewHeader("Service-Route", v))
		}
	}
	if r.gruu != nil {
		res.AppendHeader(sip.NewHeader("Supported", "path, outbound, gruu"))
	} else {
		res.AppendHeader(sip.NewHeader("Supported", "path, outbound"))
	}
	if infoValue != "" {
		res.AppendHeader(sip.NewHeader(infoName, infoValue))
	}
	return res
}

const http1123 = "Mon, 02 Jan 2006 15:04:05 GMT"

func contactValue(b Binding, now time.Time) string {
	rem := b.Expires.Sub(now)
	secs := int64((rem + time.Second - 1) / time.Second)
	if secs < 0 {
		secs = 0
	}
	var sb strings.Builder
	sb.Grow(len(b.Contact) + len(b.Instance) + 64)
	sb.WriteByte('<')
	sb.WriteString(b.Contact)
	sb.WriteString(">;expires=")
	sb.WriteString(strconv.FormatInt(secs, 10))
	if b.Q >= 0 {
		sb.WriteString(";q=")
		sb.WriteString(formatQ(b.Q))
	}
	if b.Instance != "" {
		sb.WriteString(";+sip.instance=")
		sb.WriteString(quoteParam(b.Instance))
	}
	if b.RegID != 0 {
		sb.WriteString(";reg-id=")
		sb.WriteString(strconv.FormatInt(b.RegID, 10))
	}
	return sb.String()
}

// OrigMarker marks a Service-Route URI of ours, as the user part
// (sip:orig@host;lr, the 3GPP convention) or as a URI parameter
// (sip:host;lr;orig): a request that comes back through it is
// UA-originated (package location).
const OrigMarker = "orig"

// serviceRoute renders one Service-Route value with the OrigMarker
// parameter: when the UA preloads it and the request comes
// back to us, the marker tells a UA-originated request from a PBX one by
// the route it arrived with, never by source address (DESIGN.md).
func serviceRoute(uri string) string {
	u := strings.TrimSuffix(strings.TrimPrefix(uri, "<"), ">")
	var parsed sip.Uri
	if parseSIPURI(u, &parsed) == nil && !parsed.UriParams.Has(OrigMarker) && !strings.EqualFold(parsed.User, OrigMarker) {
		u += ";" + OrigMarker
	}
	return "<" + u + ">"
}

// parseDelta parses delta-seconds (RFC 3261 §25.1: 1*DIGIT), saturating.
func parseDelta(s string) (uint64, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 20 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return maxExpires, true
	}
	return v, true
}

// parseQ parses a q-value (RFC 3261 §20.10: "0" ["." 0*3DIGIT] / "1" ["." 0*3("0")]) into thousandths.
func parseQ(s string) (int, bool) {
	intPart, frac, _ := strings.Cut(s, ".")
	if (intPart != "0" && intPart != "1") || len(frac) > 3 {
		return 0, false
	}
	v := 0
	if intPart == "1" {
		v = 1000
	}
	mul := 100
	for i := 0; i < len(frac); i++ {
		if frac[i] < '0' || frac[i] > '9' {
			return 0, false
		}
		v += int(frac[i]-'0') * mul
		mul /= 10
	}
	if v > 1000 {
		return 0, false
	}
	return v, true
}

func formatQ(q int) string {
	if q >= 1000 {
		return "1"
	}
	s := strconv.FormatFloat(float64(q)/1000, 'f', 3, 64)
	return strings.TrimRight(strings.TrimRight(s, "0"), ".")
}

// headerValues returns the raw values of every header with this name
// (compact forms handled by sipgo), split neither on commas nor otherwise.
var (
	headerValues = sipproxy.HeaderValues
	headerValue  = sipproxy.HeaderValue
)

// extensions is what a REGISTER's Supported header fields (long or
// compact form, RFC 3261 §20.37, §7.3.3) list among the option tags the
// registrar acts on, compared case-insensitively. Read once per REGISTER,
// without allocating.
type extensions struct{ path, outbound, gruu bool }

func supportedExtensions(req *sip.Request) extensions {
	var e extensions
	for _, h := range req.Headers() {
		if n := h.Name(); !strings.EqualFold(n, "supported") && !strings.EqualFold(n, "k") {
			continue
		}
		for t := range strings.SplitSeq(h.Value(), ",") {
			t = strings.TrimSpace(t)
			e.path = e.path || strings.EqualFold(t, "path")
			e.outbound = e.outbound || strings.EqualFold(t, "outbound")
			e.gruu = e.gruu || strings.EqualFold(t, "gruu")
		}
	}
	return e
}

func (r *Registrar) unsupportedTags(require []string) []string {
	var out []string
	for t := range routeset.OptionTags(require) {
		if !supportedTags[t] && !(t == "gruu" && r.gruu != nil) {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// splitList splits comma-joined name-addr header values (Path) into
// individual values, validating each.
func splitList(vals []string) ([]string, error) {
	var out []string
	for _, v := range vals {
		parts, err := splitTopLevel(v, ',')
		if err != nil {
			return nil, err
		}
		for _, p := range parts {
			p = strings.TrimSpace(p)
			c, err := parseContact(p)
			if err != nil || c.Wildcard {
				return nil, fmt.Errorf("path entry %q: bad request", p)
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// pathHasOB reports whether a Path value's URI carries the ob parameter (RFC 5626 §5.1).
func pathHasOB(p string) bool {
	c, err := parseContact(p)
	return err == nil && c.URI.UriParams.Has("ob")
}

func (r *Registrar) servesHost(h string) bool {
	h = strings.ToLower(strings.Trim(h, "[]"))
	return r.domains[h]
}

func (r *Registrar) trustedEdge(a netip.Addr) bool { return r.trustedEdges.Contains(a) }

func (r *Registrar) randFloat() float64 {
	if r.rand != nil {
		return r.rand()
	}
	return rand.Float64()
}

func (r *Registrar) randN(n int) int {
	if n <= 1 {
		return 0
	}
	return int(r.randFloat() * float64(n))
}
