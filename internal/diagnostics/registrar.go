package diagnostics

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pinhole-sip/pinhole/registrar"
)

var (
	_ registrar.Observer          = (*Detector)(nil)
	_ registrar.NoBindingObserver = (*Detector)(nil)
)

// ObserveRegister implements registrar.Observer: the registrar-side
// fingerprints (expiry_ignored, interval_too_brief_loop, ghost_bindings,
// nonce_not_reused). Work is O(Contacts) per REGISTER.
func (d *Detector) ObserveRegister(ev registrar.RegisterObservation) {
	if ev.AOR == "" || len(ev.Contacts) == 0 {
		return // a fetch or an unusable request: nothing per device
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := ev.Time
	for _, c := range ev.Contacts {
		s := d.deviceLocked(ev.AOR, c.Device, now)
		switch {
		case ev.Status == 423:
			d.brief423Locked(s, c, ev, now)
		case ev.Status == 401 || ev.Status == 407:
			if ev.Reason == "auth_challenged" || ev.Reason == "auth_stale" {
				d.challengedLocked(s, ev, now)
			}
		case ev.Status >= 200 && ev.Status < 300:
			d.acceptedLocked(s, c, ev, now)
		}
		d.clearLocked(s, now)
	}
	if ev.Status >= 200 && ev.Status < 300 {
		d.ghostsLocked(ev, now)
	}
}

// brief423Locked: the same too-small expiry answered 423 BriefCount times
// within BriefWindow (the UA ignores Min-Expires).
func (d *Detector) brief423Locked(s *device, c registrar.ContactObservation, ev registrar.RegisterObservation, now time.Time) {
	if c.Requested <= 0 || (ev.MinExpires > 0 && c.Requested >= ev.MinExpires) {
		return
	}
	if s.briefExp != c.Requested {
		s.briefExp, s.briefTimes = c.Requested, s.briefTimes[:0]
	}
	s.briefTimes = slide(s.briefTimes, now, d.cfg.BriefWindow, d.cfg.BriefCount)
	if len(s.briefTimes) >= d.cfg.BriefCount {
		d.raiseLocked(s, IntervalTooBriefLoop, now, Evidence{Time: now, Text: fmt.Sprintf(
			"REGISTER Expires: %d → 423 Min-Expires: %d ×%d within %s", c.Requested, ev.MinExpires,
			len(s.briefTimes), now.Sub(s.briefTimes[0]).Round(time.Second))})
	}
}

// challengedLocked: a refresh drew a 401 although the last 2xx gave a
// nextnonce (counted once per refresh; the retry with credentials follows).
func (d *Detector) challengedLocked(s *device, ev registrar.RegisterObservation, now time.Time) {
	if !s.nextnonce || s.challenged {
		return
	}
	s.challenged = true
	s.misses++
	if s.misses >= d.cfg.NonceMisses {
		what := "no credentials"
		if ev.Credentials {
			what = "stale nonce"
		}
		d.raiseLocked(s, NonceNotReused, now, Evidence{Time: now, Text: fmt.Sprintf(
			"refresh with %s → %d although the last 200 carried nextnonce (%d refreshes in a row)", what, ev.Status, s.misses)})
	}
}

// acceptedLocked handles a 2xx for one Contact: expiry_ignored and the
// nonce bookkeeping. expiry_ignored needs the refresh to come after the
// shortened grant had lapsed but within the interval the UA asked for (a
// UA back after a longer absence was off, not wrong); the inbound requests
// that found no binding for the AOR meanwhile count towards it.
func (d *Detector) acceptedLocked(s *device, c registrar.ContactObservation, ev registrar.RegisterObservation, now time.Time) {
	if !s.grantedUntil.IsZero() && now.After(s.grantedUntil) && c.Granted > 0 &&
		!now.After(s.grantedAt.Add(time.Duration(s.requested)*time.Second)) {
		text := fmt.Sprintf("asked %d s, granted %d s; the next REGISTER came %s after the binding had expired",
			s.requested, s.granted, now.Sub(s.grantedUntil).Round(time.Second))
		if m := d.misses[s.key.aor]; m != nil && m.last.After(s.grantedUntil) {
			text += fmt.Sprintf("; %d inbound requests found no binding meanwhile (last at %s)",
				m.n, m.last.UTC().Format(time.TimeOnly))
		}
		d.raiseLocked(s, ExpiryIgnored, now, Evidence{Time: now, Text: text})
	}
	d.setGrantLocked(s, time.Time{})
	delete(d.misses, s.key.aor) // whatever missed belonged to the gap just closed
	if c.Granted > 0 {
		s.interval = time.Duration(c.Granted) * time.Second
		if c.Requested > c.Granted {
			d.setGrantLocked(s, now)
			s.requested, s.granted = c.Requested, c.Granted
		}
	}
	if !s.challenged {
		s.misses = 0 // the refresh went through without a challenge
	}
	s.challenged = false
	s.nextnonce = ev.NextNonce
}

// setGrantLocked records a shortened grant made at at (zero: none) and
// keeps the per-AOR count of such devices that ObserveNoBinding checks.
func (d *Detector) setGrantLocked(s *device, at time.Time) {
	had, has := !s.grantedUntil.IsZero(), !at.IsZero()
	switch {
	case has && !had:
		d.shortened[s.key.aor]++
	case had && !has:
		if d.shortened[s.key.aor]--; d.shortened[s.key.aor] <= 0 {
			delete(d.shortened, s.key.aor)
			delete(d.misses, s.key.aor)
		}
	}
	s.grantedAt, s.grantedUntil = at, time.Time{}
	if has {
		s.grantedUntil = at.Add(s.interval)
	}
}

// ObserveNoBinding implements registrar.NoBindingObserver: an inbound
// request found no binding for aor. It is remembered only for an AOR with
// a device whose last grant was shorter than it asked (state O(1), bounded
// by the tracked devices), and reported with that device's late refresh
// (expiry_ignored).
func (d *Detector) ObserveNoBinding(aor string, t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.shortened[aor] == 0 {
		return
	}
	m := d.misses[aor]
	if m == nil {
		m = &missed{}
		d.misses[aor] = m
	}
	m.n++
	m.last = t
}

// ghostsLocked: GhostMin or more non-outbound bindings of the AOR from one
// host, or one instance, whose Contacts differ only in port or host.
func (d *Detector) ghostsLocked(ev registrar.RegisterObservation, now time.Time) {
	if len(ev.Answer) < d.cfg.GhostMin {
		return
	}
	groups := map[string][]registrar.ContactObservation{}
	for _, b := range ev.Answer {
		if b.RegID != 0 {
			continue // outbound: one flow replaces the other by design
		}
		k := "host " + b.Host
		if b.Instance != "" {
			k = "instance " + b.Instance
		}
		groups[k] = append(groups[k], b)
	}
	for k, bs := range groups {
		if len(bs) < d.cfg.GhostMin {
			continue
		}
		var ends []string
		for _, b := range bs {
			ends = append(ends, fmt.Sprintf("%s:%d", b.Host, b.Port))
		}
		sort.Strings(ends)
		dev := strings.TrimPrefix(strings.TrimPrefix(k, "instance "), "host ")
		s := d.deviceLocked(ev.AOR, dev, now)
		d.raiseLocked(s, GhostBindings, now, Evidence{Time: now, Text: fmt.Sprintf(
			"%d bindings from %s: %s", len(bs), k, strings.Join(ends, ", "))})
	}
}
