package registrar

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/sipproxy"
)

// Observer receives one RegisterObservation per answered REGISTER (live
// diagnostics). It is called synchronously after the answer is built and
// must be quick and non-blocking; it must not keep the observation's
// slices.
type Observer interface {
	ObserveRegister(RegisterObservation)
}

// NoBindingObserver is the optional part of an Observer that is told of
// every inbound request the location service answered without a target
// because the AOR had no live binding (RFC 3261 §16.5; the 480
// no_binding), with the canonical AOR and the time.
type NoBindingObserver interface {
	ObserveNoBinding(aor string, t time.Time)
}

// observeNoBinding reports a location look-up that found no live binding
// for aor to the observer, if it wants to know. The proxy calls it where
// it answers 480 no_binding.
func (r *Registrar) observeNoBinding(aor string) {
	op := r.observer.Load()
	if op == nil {
		return
	}
	if o, ok := (*op).(NoBindingObserver); ok {
		o.ObserveNoBinding(aor, r.now())
	}
}

// RegisterObservation is what an answered REGISTER showed.
type RegisterObservation struct {
	Time   time.Time
	AOR    string // canonical; "" when To was unusable
	Status int
	Reason string // the typed rejection reason, "" for a 2xx
	Source Source
	// Contacts of the request, with what was asked and what was granted.
	Contacts []ContactObservation
	// Credentials: the request carried an Authorization header (reported
	// for rejections only).
	Credentials bool
	// NextNonce: the answer carried Authentication-Info with nextnonce.
	NextNonce bool
	// MinExpires of a 423, in seconds.
	MinExpires int64
	// Answer lists every binding in a 2xx (after the change) when there
	// are two or more; a lone binding is the request's own Contact.
	Answer []ContactObservation
}

// ContactObservation is one Contact of a REGISTER or of its 2xx.
type ContactObservation struct {
	// Device is the +sip.instance when present, else the Contact URI.
	Device   string
	URI      string
	Host     string
	Port     int
	Instance string
	RegID    int64
	// Requested seconds (the Contact's expires, else the Expires header,
	// else -1); Granted seconds in the 2xx (-1 when absent).
	Requested int64
	Granted   int64
}

// SetObserver installs (or, with nil, removes) the REGISTER observer. It
// may be called while the registrar serves.
func (r *Registrar) SetObserver(o Observer) {
	if o == nil {
		r.observer.Store(nil)
		return
	}
	r.observer.Store(&o)
}

// observerBox holds the observer for atomic replacement.
type observerBox = atomic.Pointer[Observer]

// registerSeen is what register parsed and decided, kept for observe so
// that the observer costs no second parse of the request or the answer.
// A nil *registerSeen records nothing (no observer, or Explain).
type registerSeen struct {
	aor        string
	parsed     bool // the Contacts were parsed (specs may be empty: a fetch)
	specs      []contactSpec
	hdrExpires *uint64
	granted    []contactReq // per spec, once evaluated (2xx path)
	answered   bool         // a 2xx was built from bindings
	now        time.Time
	bindings   []Binding
	nextNonce  bool
}

func (s *registerSeen) setAOR(aor string) {
	if s != nil {
		s.aor = aor
	}
}

func (s *registerSeen) setContacts(specs []contactSpec, hdrExpires *uint64) {
	if s != nil {
		s.parsed, s.specs, s.hdrExpires = true, specs, hdrExpires
	}
}

func (s *registerSeen) setGranted(reqs []contactReq) {
	if s != nil {
		s.granted = reqs
	}
}

func (s *registerSeen) setAnswer(now time.Time, bindings []Binding, authInfo string) {
	if s != nil {
		s.answered, s.now, s.bindings = true, now, bindings
		s.nextNonce = strings.Contains(strings.ToLower(authInfo), "nextnonce")
	}
}

// observe reports an answered REGISTER to the observer, if any. What
// register already parsed (seen) is used as is; only a request answered
// before its Contacts were parsed (a challenge, an early rejection) has
// them parsed here.
func (r *Registrar) observe(req *sip.Request, src Source, res *sip.Response, rej *Rejection, seen *registerSeen) {
	op := r.observer.Load()
	if op == nil {
		return
	}
	if seen == nil {
		seen = &registerSeen{}
	}
	ev := RegisterObservation{Time: r.now(), AOR: seen.aor, Status: res.StatusCode, Source: src}
	if ev.AOR == "" {
		to := req.To()
		if to == nil {
			return
		}
		ev.AOR = CanonicalAOR(&to.Address)
	}
	if rej != nil {
		ev.Reason = rej.Reason
		ev.Credentials = sipproxy.Header(req, "authorization") != nil
	}
	if res.StatusCode == 423 {
		if h := sipproxy.Header(res, "min-expires"); h != nil {
			ev.MinExpires, _ = strconv.ParseInt(strings.TrimSpace(h.Value()), 10, 64)
		}
	}
	ok := res.StatusCode >= 200 && res.StatusCode < 300
	if ok && seen.answered {
		ev.NextNonce = seen.nextNonce
		if len(seen.bindings) > 1 {
			ev.Answer = make([]ContactObservation, 0, len(seen.bindings))
			for i := range seen.bindings {
				ev.Answer = append(ev.Answer, bindingObservation(&seen.bindings[i], seen.now))
			}
		}
	}
	specs, hdrExpires := seen.specs, seen.hdrExpires
	if !seen.parsed {
		specs, _ = parseContacts(headerValues(req, "contact"))
		if h := sipproxy.Header(req, "expires"); h != nil {
			if v, ok := parseDelta(h.Value()); ok {
				hdrExpires = &v
			}
		}
	}
	// The observer must not keep the slices (Observer): the Contacts'
	// backing array is reused.
	buf := contactObsPool.Get().(*[]ContactObservation)
	defer func() {
		clear(ev.Contacts)
		*buf = ev.Contacts[:0]
		contactObsPool.Put(buf)
	}()
	ev.Contacts = (*buf)[:0]
	for i := range specs {
		c := &specs[i]
		if c.Wildcard {
			continue
		}
		asked := int64(-1)
		if hdrExpires != nil {
			asked = int64(min(*hdrExpires, maxExpires))
		}
		if v, ok := c.get("expires"); ok {
			if d, ok := parseDelta(v); ok {
				asked = int64(min(d, maxExpires))
			}
		}
		o := observation(c, asked)
		if ok && i < len(seen.granted) && seen.granted[i].granted > 0 {
			o.Granted = int64((seen.granted[i].granted + time.Second - 1) / time.Second)
		}
		ev.Contacts = append(ev.Contacts, o)
	}
	(*op).ObserveRegister(ev)
}

// contactObsPool holds the backing arrays of RegisterObservation.Contacts.
var contactObsPool = sync.Pool{New: func() any { return new([]ContactObservation) }}

// bindingObservation describes one binding of a 2xx; the Contact is
// parsed only for its host and port.
func bindingObservation(b *Binding, now time.Time) ContactObservation {
	o := ContactObservation{URI: b.Contact, Instance: b.Instance, RegID: b.RegID, Requested: -1,
		Granted: max(int64((b.Expires.Sub(now)+time.Second-1)/time.Second), 0)}
	if c, err := parseContact(b.Contact); err == nil {
		o.Host, o.Port = strings.ToLower(c.URI.Host), c.URI.Port
	}
	o.Device = o.Instance
	if o.Device == "" {
		o.Device = b.Contact
	}
	return o
}

func observation(c *contactSpec, requested int64) ContactObservation {
	o := ContactObservation{URI: c.URIText, Host: strings.ToLower(c.URI.Host), Port: c.URI.Port,
		Requested: requested, Granted: -1}
	if v, ok := c.get("+sip.instance"); ok {
		o.Instance = v
	}
	if v, ok := c.get("reg-id"); ok {
		o.RegID, _ = strconv.ParseInt(v, 10, 64)
	}
	if v, ok := c.get("expires"); ok && requested < 0 {
		if d, ok := parseDelta(v); ok {
			o.Granted = int64(min(d, maxExpires))
		}
	}
	o.Device = o.Instance
	if o.Device == "" {
		o.Device = c.URIText
	}
	return o
}
