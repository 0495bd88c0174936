package registrar

import (
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Observer receives one RegisterObservation per answered REGISTER (live
// diagnostics). It is called synchronously after the answer is built and
// must be quick and non-blocking; it must not keep the observation's
// slices.
type Observer interface {
	ObserveRegister(RegisterObservation)
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
	// Credentials: the request carried an Authorization header.
	Credentials bool
	// NextNonce: the answer carried Authentication-Info with nextnonce.
	NextNonce bool
	// MinExpires of a 423, in seconds.
	MinExpires int64
	// Answer lists every binding in a 2xx (after the change).
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

// observe reports an answered REGISTER to the observer, if any.
func (r *Registrar) observe(req *sip.Request, src Source, res *sip.Response, rej *rejection) {
	op := r.observer.Load()
	if op == nil {
		return
	}
	to := req.To()
	if to == nil {
		return
	}
	ev := RegisterObservation{Time: r.now(), AOR: CanonicalAOR(&to.Address), Status: res.StatusCode, Source: src,
		Credentials: req.GetHeader("authorization") != nil}
	if rej != nil {
		ev.Reason = rej.reason
	}
	if h := res.GetHeader("authentication-info"); h != nil && strings.Contains(strings.ToLower(h.Value()), "nextnonce") {
		ev.NextNonce = true
	}
	if h := res.GetHeader("min-expires"); h != nil {
		ev.MinExpires, _ = strconv.ParseInt(strings.TrimSpace(h.Value()), 10, 64)
	}
	hdrExp := int64(-1)
	if h := req.GetHeader("expires"); h != nil {
		if v, ok := parseDelta(h.Value()); ok {
			hdrExp = int64(min(v, maxExpires))
		}
	}
	var answer []contactSpec
	if res.StatusCode >= 200 && res.StatusCode < 300 {
		var vals []string
		for _, h := range res.GetHeaders("contact") {
			vals = append(vals, h.Value())
		}
		answer, _ = parseContacts(vals)
		for i := range answer {
			ev.Answer = append(ev.Answer, observation(&answer[i], -1))
		}
	}
	reqContacts, _ := parseContacts(headerValues(req, "contact"))
	for i := range reqContacts {
		c := &reqContacts[i]
		if c.Wildcard {
			continue
		}
		asked := hdrExp
		if v, ok := c.get("expires"); ok {
			if d, ok := parseDelta(v); ok {
				asked = int64(min(d, maxExpires))
			}
		}
		o := observation(c, asked)
		for j := range answer {
			if URIEqual(&answer[j].URI, &c.URI) {
				o.Granted = ev.Answer[j].Granted
				break
			}
		}
		ev.Contacts = append(ev.Contacts, o)
	}
	(*op).ObserveRegister(ev)
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
