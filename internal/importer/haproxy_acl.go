package importer

import (
	"net/netip"
	"slices"
	"strings"
)

// aclDef is one "acl NAME FETCH VALUE..." line; lines with the same name
// are alternatives (HAProxy ORs them).
type aclDef struct {
	line   Line
	kind   string // "src", "path" (prefix match) or "" (anything else)
	nets   []netip.Prefix
	paths  []string
	reason string // why kind is "": shown in errors
}

// aclTerm is one term of a rule's condition, its ACLs resolved.
type aclTerm struct {
	neg   bool
	kind  string
	nets  []netip.Prefix
	paths []string
	text  string
}

// parseACLCriterion reads "FETCH [-i] [-m beg] VALUE..." into an aclDef.
func parseACLCriterion(l Line, words []string) aclDef {
	d := aclDef{line: l}
	if len(words) == 0 {
		d.reason = "empty condition"
		return d
	}
	fetch, rest := words[0], words[1:]
	match := ""
	var vals []string
	for i := 0; i < len(rest); i++ {
		switch rest[i] {
		case "-i", "--":
		case "-m":
			if i+1 < len(rest) {
				i++
				match = rest[i]
			}
		case "-f":
			d.reason = "patterns read from a file (-f) are not imported"
			return d
		default:
			vals = append(vals, rest[i])
		}
	}
	switch {
	case fetch == "src" && match == "":
		for _, v := range vals {
			p, err := parsePrefixOrAddr(v)
			if err != nil {
				d.reason = "src " + v + " is not an address or network"
				return d
			}
			d.nets = append(d.nets, p)
		}
		d.kind = "src"
	case (fetch == "path_beg" && match == "") || (fetch == "path" && match == "beg"):
		d.kind, d.paths = "path", vals
	case (fetch == "path" && match == "") || fetch == "path_str":
		d.kind, d.paths = "path", vals // exact paths: treated as prefixes of themselves
	default:
		d.reason = "the ACL " + strings.Join(words, " ") + " matches on something kclb does not filter on (it filters by path prefix and, for /admin/, by client network)"
	}
	if len(vals) == 0 && d.kind != "" {
		d.kind, d.reason = "", "no values"
	}
	return d
}

func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// condition resolves the words after "if"/"unless" into terms. ok is
// false (with the reason) for anything but a conjunction of known ACLs
// and anonymous { ... } ACLs.
func (c *hapConv) condition(words []string) (terms []aclTerm, reason string, ok bool) {
	for i := 0; i < len(words); i++ {
		w := words[i]
		switch w {
		case "or", "||":
			return nil, "conditions with 'or' are not imported", false
		case "&&":
			continue
		}
		neg := false
		if w == "!" {
			neg = true
			i++
			if i >= len(words) {
				return nil, "dangling '!'", false
			}
			w = words[i]
		} else if strings.HasPrefix(w, "!") && len(w) > 1 {
			neg, w = true, w[1:]
		}
		var defs []aclDef
		text := w
		if w == "{" {
			end := slices.Index(words[i:], "}")
			if end < 0 {
				return nil, "unclosed '{'", false
			}
			inner := words[i+1 : i+end]
			text = "{ " + strings.Join(inner, " ") + " }"
			defs = []aclDef{parseACLCriterion(Line{}, inner)}
			i += end
		} else {
			var found bool
			defs, found = c.acls[w]
			if !found {
				return nil, "ACL " + w + " is not defined in this section", false
			}
		}
		t := aclTerm{neg: neg, text: text}
		for _, d := range defs {
			if d.kind == "" {
				return nil, d.reason, false
			}
			if t.kind != "" && t.kind != d.kind {
				return nil, "ACL " + w + " mixes networks and paths", false
			}
			t.kind = d.kind
			t.nets = append(t.nets, d.nets...)
			t.paths = append(t.paths, d.paths...)
		}
		terms = append(terms, t)
	}
	if len(terms) == 0 {
		return nil, "no condition", false
	}
	return terms, "", true
}

// adminLike reports whether p is a path kclb keeps from the public
// anyway: the admin console and API (/admin/, open to
// paths.admin_networks), metrics and health.
func (c *hapConv) adminLike(p string) bool {
	p = strings.ToLower(p)
	for _, a := range []string{"/admin", "/metrics", "/health"} {
		if p == a || strings.HasPrefix(p, a+"/") {
			return true
		}
	}
	return false
}

// denyRule maps "http-request deny|reject [deny_status N] if|unless COND"
// onto [paths]: network ACLs guarding the admin paths become
// paths.admin_networks, a "!public" path ACL becomes paths.public. A rule kclb
// cannot express is an error.
//
// Every outcome is recorded as a message on l.
func (c *hapConv) denyRule(l Line, words []string) {
	for len(words) > 0 && words[0] != "if" && words[0] != "unless" {
		if words[0] == "deny_status" && len(words) > 1 {
			words = words[2:]
			continue
		}
		words = words[1:]
	}
	if len(words) == 0 {
		c.fail(l, "denies every request; kclb cannot close a listener to all clients")
		return
	}
	terms, reason, ok := c.condition(words[1:])
	if ok && words[0] == "unless" {
		if len(terms) != 1 {
			ok, reason = false, "'unless' with more than one term is not imported"
		} else {
			terms[0].neg = !terms[0].neg
		}
	}
	if !ok {
		c.fail(l, "%s; this access rule is not imported (kclb exposes paths.public to everyone and /admin/ to paths.admin_networks)", reason)
		return
	}
	var src *aclTerm
	var paths []aclTerm
	for i := range terms {
		switch t := &terms[i]; {
		case t.kind == "src" && t.neg && src == nil:
			src = t
		case t.kind == "path":
			paths = append(paths, *t)
		default:
			c.fail(l, "the term %s is not imported: kclb can only let client networks (a negated src ACL) reach /admin/", t.text)
			return
		}
	}
	if len(paths) == 0 {
		c.fail(l, "restricts every path to networks; kclb restricts only /admin/ to paths.admin_networks and cannot close its public paths")
		return
	}
	var public []string
	for _, p := range paths {
		if p.neg {
			// deny if !public ...: everything outside these prefixes is
			// restricted (or denied).
			if public != nil {
				c.fail(l, "two negated path ACLs; not imported")
				return
			}
			public = p.paths
			continue
		}
		for _, pp := range p.paths {
			if lp := strings.ToLower(pp); strings.HasSuffix(strings.TrimSuffix(lp, "/"), "/admin") && !strings.HasPrefix(lp, "/admin") {
				c.fail(l, "restricts %s: kclb lets paths.admin_networks reach /admin/ at the root only; under an http-relative-path prefix the admin console (%s) is blocked for every client", pp, pp)
				return
			}
			if !c.adminLike(pp) {
				c.fail(l, "restricts %s, which kclb cannot restrict: it blocks only paths outside paths.public and lets only /admin/ through for paths.admin_networks", pp)
				return
			}
		}
	}
	from := c.from(l)
	if public != nil {
		c.publicFrom = append(c.publicFrom, strOrigin{strings.Join(public, " "), from})
		for _, p := range public {
			if !slices.Contains(c.publicPaths, p) {
				c.publicPaths = append(c.publicPaths, p)
			}
		}
	}
	if src == nil {
		c.info(l, "kclb never serves /metrics, /health or any path outside paths.public on its public listeners, and /admin/ only to paths.admin_networks (default: loopback only)")
		c.deniedAll = append(c.deniedAll, from)
		return
	}
	for _, n := range src.nets {
		if !slices.Contains(c.adminNets, n) {
			c.adminNets = append(c.adminNets, n)
		}
	}
	c.adminFrom = append(c.adminFrom, from)
	c.info(l, "mapped to paths.admin_networks (who may reach /admin/)")
}
