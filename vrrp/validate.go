package vrrp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// FieldError is one problem with one Options field. Validate and Check
// return them joined (errors.Join), every problem at once. Field names
// the Go field, with an index for a list element ("Priority",
// "VIPs[1]"); Msg says what is wrong without repeating it, in words that
// also read right after a configuration key ("300 is out of range
// 1..255"), so a caller that knows which key set the field can report it
// there.
type FieldError struct {
	Field string
	Msg   string
}

// Error returns "Field: Msg".
func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// InstanceError is what Check returns for the instance at Index of its
// list: Err holds that instance's *FieldErrors.
type InstanceError struct {
	Index int
	Name  string
	Err   error
}

// Error returns `vrrp instance "NAME": ` and the field errors.
func (e *InstanceError) Error() string { return fmt.Sprintf("vrrp instance %q: %v", e.Name, e.Err) }

// Unwrap returns Err.
func (e *InstanceError) Unwrap() error { return e.Err }

// fields collects FieldErrors.
type fields []error

func (f *fields) add(field, format string, args ...any) {
	*f = append(*f, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

func idx(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }

// familyName names an address family in messages.
func familyName(ipv6 bool) string {
	if ipv6 {
		return "IPv6"
	}
	return "IPv4"
}

// Validate checks every rule New applies to o, without opening anything,
// and returns nil or the *FieldErrors joined. Zero fields stand for
// their defaults and are valid, as are the documented negative values.
func (o Options) Validate() error {
	var f fields
	switch {
	case o.Interface == "":
		f.add("Interface", "is required")
	case len(o.Interface) > 15 || strings.ContainsAny(o.Interface, "/ \t\n") || o.Interface == "." || o.Interface == "..":
		f.add("Interface", "%q is not a valid interface name", o.Interface)
	}
	switch {
	case o.VRID == 0:
		f.add("VRID", "is required (1..255)")
	case o.VRID < 1 || o.VRID > 255:
		f.add("VRID", "%d is out of range 1..255", o.VRID)
	}
	if o.Priority < 0 || o.Priority > 255 {
		f.add("Priority", "%d is out of range 1..255", o.Priority)
	}
	version := o.Version
	if version == 0 {
		version = DefaultVersion
	}
	d := o.AdvertInterval
	if d == 0 {
		d = DefaultAdvertInterval
	}
	switch version {
	case 2:
		if d < time.Second || d > 255*time.Second || d%time.Second != 0 {
			f.add("AdvertInterval", "%s: VRRP version 2 needs whole seconds in 1s..255s", d)
		}
	case 3:
		if d < 10*time.Millisecond || d > 40950*time.Millisecond || d%(10*time.Millisecond) != 0 {
			f.add("AdvertInterval", "%s: want 10ms..40.95s in steps of 10ms", d)
		}
		if o.AuthPass != "" {
			f.add("AuthPass", "VRRP version 3 has no authentication; remove the password or use version 2")
		}
	default:
		f.add("Version", "%d is not 2 or 3", o.Version)
	}
	if len(o.AuthPass) > authDataLen {
		f.add("AuthPass", "is %d bytes; VRRP allows at most %d", len(o.AuthPass), authDataLen)
	}
	v6, famSet := o.validateVIPs(&f)
	if v6 && version == 2 {
		f.add("Version", "2 is IPv4 only; IPv6 virtual addresses need version = 3")
	}
	fam := familyName(v6)
	for j, a := range o.UnicastPeers {
		switch {
		case famSet && !inFamily(a, v6):
			f.add(idx("UnicastPeers", j), "%q is not %s like the instance's virtual addresses", a, fam)
		case v6 && !a.IsLinkLocalUnicast():
			// The receiver compares the advert's source with the peer list,
			// and IPv6 adverts always come from a link-local address.
			f.add(idx("UnicastPeers", j), "%q is not link-local (fe80::/10): IPv6 adverts come from the peer's link-local address, so list that", a)
		}
	}
	if a := o.SourceAddr; a.IsValid() {
		switch {
		case famSet && !v6 && !a.Is4():
			f.add("SourceAddr", "%q is not an IPv4 address (VRRP here advertises over IPv4)", a)
		case v6 && (!inFamily(a, true) || !a.IsLinkLocalUnicast()):
			f.add("SourceAddr", "%q is not an IPv6 link-local address (fe80::/10): IPv6 adverts are sent from the interface's link-local address (RFC 5798 §5.1.2.1)", a)
		case a.IsUnspecified() || a.IsMulticast() || a.IsLoopback():
			f.add("SourceAddr", "%q cannot be the source of adverts", a)
		case slices.ContainsFunc(o.VIPs, func(p netip.Prefix) bool { return p.Addr().Unmap() == a.Unmap() }):
			f.add("SourceAddr", "%q is one of the virtual addresses; use the interface's own address", a)
		case slices.ContainsFunc(o.UnicastPeers, func(p netip.Addr) bool { return p.Unmap() == a.Unmap() }):
			f.add("SourceAddr", "%q is also one of the unicast peers", a)
		}
	}
	if o.PreemptDelay < 0 {
		f.add("PreemptDelay", "must not be negative, got %s", o.PreemptDelay)
	}
	if o.TrackWeight < 0 || o.TrackWeight > 254 {
		f.add("TrackWeight", "%d is out of range 0..254", o.TrackWeight)
	}
	if o.TrackRise < 0 {
		f.add("TrackRise", "%d is less than 1", o.TrackRise)
	}
	if o.TrackFall < 0 {
		f.add("TrackFall", "%d is less than 1", o.TrackFall)
	}
	if o.GARPRefresh < 0 {
		f.add("GARPRefresh", "must not be negative, got %s", o.GARPRefresh)
	}
	return errors.Join(f...)
}

// validateVIPs checks the VIPs: 1..255 usable addresses of one family,
// the first valid one deciding (as in keepalived). It returns that family
// and whether any VIP set it.
func (o Options) validateVIPs(f *fields) (v6, famSet bool) {
	switch {
	case len(o.VIPs) == 0:
		f.add("VIPs", "needs at least one virtual address")
	case len(o.VIPs) > 255:
		f.add("VIPs", "has %d addresses; VRRP allows at most 255", len(o.VIPs))
	}
	for j, p := range o.VIPs {
		a := p.Addr()
		switch {
		case !p.IsValid():
			f.add(idx("VIPs", j), "is not a network")
			continue
		case a.Is4In6():
			f.add(idx("VIPs", j), "%q is an IPv4-mapped IPv6 address; write it as IPv4 (%v)", p, a.Unmap())
			continue
		case a.IsUnspecified() || a.IsMulticast() || a.IsLoopback():
			f.add(idx("VIPs", j), "%q cannot be a virtual address", p)
			continue
		}
		if !famSet {
			v6, famSet = a.Is6(), true
		} else if a.Is6() != v6 {
			f.add(idx("VIPs", j), "%q is %s but the instance's first VIP is %s: one address family per instance (put the other family in an instance of its own)",
				p, familyName(a.Is6()), familyName(v6))
		}
	}
	return v6, famSet
}

// inFamily reports whether a is an address of the family (IPv6 without
// IPv4-mapped addresses, or IPv4).
func inFamily(a netip.Addr, v6 bool) bool {
	if v6 {
		return a.Is6() && !a.Is4In6()
	}
	return a.Is4()
}

// Check validates every instance of list (as Reconcile's New would) and
// that no two share a virtual router: VRIDs are unique per interface and
// address family (RFC 5798 §7.3 keeps IPv4 and IPv6 apart). It opens
// nothing. The error joins an *InstanceError per instance with problems.
func Check(list []Options) error {
	type router struct {
		iface string
		vrid  int
		ipv6  bool
	}
	routers := make(map[router]int)
	var errs []error
	for i, o := range list {
		err := o.Validate()
		if o.Interface != "" && o.VRID != 0 {
			v6, _ := o.validateVIPs(new(fields))
			r := router{o.Interface, o.VRID, v6}
			if j, dup := routers[r]; dup {
				err = errors.Join(err, &FieldError{Field: "VRID", Msg: fmt.Sprintf("%d is already used on %s for %s by instance %q",
					o.VRID, o.Interface, familyName(r.ipv6), list[j].Name)})
			} else {
				routers[r] = i
			}
		}
		if err != nil {
			errs = append(errs, &InstanceError{Index: i, Name: o.Name, Err: err})
		}
	}
	return errors.Join(errs...)
}
