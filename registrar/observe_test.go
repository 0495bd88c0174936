package registrar_test

import (
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/registrar"
)

type recorder struct {
	evs []registrar.RegisterObservation
}

// ObserveRegister copies the slices: an observer must not keep them.
func (r *recorder) ObserveRegister(ev registrar.RegisterObservation) {
	ev.Contacts = append([]registrar.ContactObservation(nil), ev.Contacts...)
	ev.Answer = append([]registrar.ContactObservation(nil), ev.Answer...)
	r.evs = append(r.evs, ev)
}

// TestObserveRegister: the observation carries what the REGISTER asked
// and what was granted (RFC 3261 §10.3 step 7: shortened to expires.max),
// the 423's Min-Expires, and every binding of a 2xx listing several.
func TestObserveRegister(t *testing.T) {
	h := newHarness(t, func(c *registrar.Config) {
		c.Expires.Max, c.Expires.Default, c.Expires.Jitter = 600*time.Second, 600*time.Second, 0
	})
	rec := &recorder{}
	h.reg.SetObserver(rec)

	h.send("Contact: <sip:alice@192.0.2.10:5060>", "Expires: 3600")
	ev := rec.evs[len(rec.evs)-1]
	if ev.AOR != "sip:alice@example.com" || ev.Status != 200 || len(ev.Contacts) != 1 || len(ev.Answer) != 0 {
		t.Fatalf("observation %+v", ev)
	}
	if c := ev.Contacts[0]; c.Device != "sip:alice@192.0.2.10:5060" || c.Requested != 3600 || c.Granted != 600 ||
		c.Host != "192.0.2.10" || c.Port != 5060 {
		t.Errorf("contact %+v", c)
	}

	h.send("Contact: <sip:alice@192.0.2.10:5062>;expires=120;+sip.instance=\"<urn:uuid:1>\"")
	ev = rec.evs[len(rec.evs)-1]
	if c := ev.Contacts[0]; c.Device != "<urn:uuid:1>" || c.Requested != 120 || c.Granted != 120 {
		t.Errorf("contact %+v", c)
	}
	if len(ev.Answer) != 2 {
		t.Fatalf("answer %+v", ev.Answer)
	}
	ports := map[int]bool{}
	for _, a := range ev.Answer {
		ports[a.Port] = a.Host == "192.0.2.10" && a.Granted > 0
	}
	if !ports[5060] || !ports[5062] {
		t.Errorf("answer %+v", ev.Answer)
	}

	h.send("Contact: <sip:alice@192.0.2.10:5064>", "Expires: 30")
	ev = rec.evs[len(rec.evs)-1]
	if ev.Status != 423 || ev.Reason != "interval_too_brief" || ev.MinExpires != 60 || len(ev.Contacts) != 1 ||
		ev.Contacts[0].Requested != 30 || ev.Contacts[0].Granted != -1 {
		t.Errorf("423 observation %+v", ev)
	}

	h.send("Contact: <sip:alice@192.0.2.10:5060>", "Expires: 0")
	ev = rec.evs[len(rec.evs)-1]
	if ev.Status != 200 || ev.Contacts[0].Requested != 0 || ev.Contacts[0].Granted != -1 {
		t.Errorf("removal observation %+v", ev)
	}
}
