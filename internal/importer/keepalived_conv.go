package importer

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// kaConv maps a keepalived configuration onto [[vrrp.instance]] tables.
type kaConv struct {
	file     string
	out      *output
	warnings []Warning

	scripts map[string]*Node // vrrp_script blocks by name
	version *Node            // global_defs vrrp_version
	garp    map[string]*Node // global_defs vrrp_garp_* by keyword
}

func (c *kaConv) from(n *Node) string {
	return c.file + ":" + strconv.Itoa(n.Line) + " " + strings.Join(redact(n.Args), " ")
}

func (c *kaConv) add(sev Severity, n *Node, format string, args ...any) {
	c.warnings = append(c.warnings, Warning{File: c.file, Line: n.Line, Directive: strings.Join(redact(n.Args), " "), Severity: sev, Msg: fmt.Sprintf(format, args...)})
}

// warn: n was translated, with a change in behaviour to know about.
func (c *kaConv) warn(n *Node, format string, args ...any) { c.add(Warn, n, format, args...) }

// fail: n could not be translated; its meaning would be lost.
func (c *kaConv) fail(n *Node, format string, args ...any) { c.add(Error, n, format, args...) }

// info: n needs nothing in kclb.
func (c *kaConv) info(n *Node, format string, args ...any) { c.add(Note, n, format, args...) }

func (c *kaConv) convert(nodes []*Node) {
	c.scripts = make(map[string]*Node)
	c.garp = make(map[string]*Node)
	for _, n := range nodes {
		switch n.Keyword() {
		case "vrrp_script":
			if len(n.Args) > 1 {
				c.scripts[n.Args[1]] = n
			}
		case "global_defs":
			c.globalDefs(n)
		}
	}
	for _, n := range nodes {
		switch n.Keyword() {
		case "vrrp_script", "global_defs":
		case "vrrp_instance":
			c.instance(n)
		case "virtual_server", "virtual_server_group":
			c.fail(n, "kclb is the load balancer; LVS virtual servers are not imported")
		case "vrrp_sync_group":
			c.fail(n, "kclb has no sync groups: give instances that must move together the same priorities; not imported")
		case "include":
			c.fail(n, "included files are not read; import them separately")
		default:
			c.fail(n, msgNotMapped)
		}
	}
	for name, s := range c.scripts {
		if s != nil {
			c.info(s, "vrrp_script %s is tracked by no instance; not imported", name)
		}
	}
}

func (c *kaConv) globalDefs(n *Node) {
	for _, d := range n.Block {
		switch d.Keyword() {
		case "router_id":
			if len(d.Args) > 1 {
				c.out.global.set("name", tomlString(d.Args[1]), "from "+c.from(d))
			}
		case "vrrp_version":
			c.version = d
		case "vrrp_garp_master_repeat", "vrrp_garp_master_delay", "vrrp_garp_master_refresh":
			c.garp[d.Keyword()] = d
		case "enable_script_security", "script_user":
			c.info(d, "notify commands run as kclb's user (kclb), without a shell")
		case "notification_email", "notification_email_from", "smtp_server", "smtp_connect_timeout":
			c.warn(d, "kclb sends no mail; alert on its metrics or notify_* commands instead")
		default:
			c.fail(d, msgNotMapped)
		}
	}
}

// instance maps one vrrp_instance block.
func (c *kaConv) instance(n *Node) {
	name := "VI_1"
	if len(n.Args) > 1 {
		name = n.Args[1]
	}
	t := newTable("vrrp.instance", true)
	t.note("from %s", c.from(n))
	t.set("name", tomlString(name), "")
	c.out.vrrp = append(c.out.vrrp, t)

	version, versionSet := 2, false
	versionFrom := "keepalived's default; version 3 (kclb's default) once every node runs kclb"
	if c.version != nil && len(c.version.Args) > 1 {
		if v, err := strconv.Atoi(c.version.Args[1]); err == nil {
			version, versionSet, versionFrom = v, true, "from "+c.from(c.version)
		}
	}
	var (
		advert    time.Duration = time.Second
		advertSet *Node
		authPass  string
		authFrom  string
		typFrom   string
		tracks    []*Node
	)
	for k, d := range c.garp {
		c.garpLine(t, d, strings.TrimPrefix(k, "vrrp_"))
	}
	for _, d := range n.Block {
		a := d.Args
		arg := ""
		if len(a) > 1 {
			arg = a[1]
		}
		switch d.Keyword() {
		case "state":
			t.note("%s: not needed, the node with the higher priority becomes master (kclb starts as backup)", c.from(d))
		case "interface":
			t.set("interface", tomlString(arg), "from "+c.from(d))
		case "virtual_router_id":
			if v, ok := c.intArg(d, 1, 255); ok {
				t.set("vrid", tomlInt(v), "from "+c.from(d))
			}
		case "priority":
			if v, ok := c.intArg(d, 1, 255); ok {
				t.set("priority", tomlInt(v), "from "+c.from(d))
			}
		case "advert_int":
			if v, ok := c.seconds(d); ok {
				advert, advertSet = v, d
			}
		case "version", "vrrp_version":
			if v, err := strconv.Atoi(arg); err == nil {
				version, versionSet, versionFrom = v, true, "from "+c.from(d)
			}
		case "authentication":
			authPass, authFrom, typFrom = c.auth(d)
		case "virtual_ipaddress":
			c.vips(t, d)
		case "virtual_ipaddress_excluded", "virtual_routes", "virtual_rules":
			c.fail(d, "kclb manages only the virtual addresses (vips); not imported")
		case "unicast_peer":
			c.unicastPeers(t, d)
		case "unicast_src_ip":
			if a, err := netip.ParseAddr(arg); err == nil && a.Unmap().Is4() {
				t.set("source_address", tomlString(a.Unmap().String()), "from "+c.from(d))
			} else {
				c.fail(d, "%q is not an IPv4 address; not imported", arg)
			}
		case "nopreempt":
			t.set("preempt", tomlBool(false), "from "+c.from(d))
		case "preempt_delay":
			if v, ok := c.seconds(d); ok {
				t.set("preempt_delay", tomlDur(v), "from "+c.from(d))
			}
		case "notify_master", "notify_backup", "notify_fault":
			if arg != "" {
				t.set(d.Keyword(), tomlString(strings.Join(a[1:], " ")), "from "+c.from(d))
			}
		case "notify", "notify_stop":
			c.fail(d, "kclb runs notify_master, notify_backup and notify_fault only; not imported")
		case "garp_master_repeat", "garp_master_delay", "garp_master_refresh":
			c.garpLine(t, d, d.Keyword())
		case "track_script":
			tracks = append(tracks, d) // after priority is known
		case "track_interface":
			c.trackInterface(t, d)
		case "smtp_alert":
			c.warn(d, "kclb sends no mail; not imported")
		default:
			c.fail(d, msgNotMapped)
		}
	}
	tracked := false
	for _, d := range tracks {
		tracked = c.trackScript(t, d) || tracked
	}
	if authPass != "" {
		if versionSet && version != 2 {
			c.warn(n, "authentication needs VRRP version 2; using version 2")
		}
		version, versionFrom = 2, typFrom
	}
	t.set("version", tomlInt(version), versionFrom)
	if advertSet != nil {
		cm := "from " + c.from(advertSet)
		if version == 2 && advert%time.Second != 0 {
			c.warn(advertSet, "VRRP version 2 needs whole seconds; rounded up")
			advert = (advert/time.Second + 1) * time.Second
		}
		t.set("advert_int", tomlDur(advert), cm)
	}
	if authPass != "" {
		t.set("auth_pass", tomlString(authPass), authFrom)
	}
	if !tracked {
		t.set("track_weight", tomlInt(0), "keepalived tracked nothing; kclb's default 50 lowers the priority while no Keycloak server is ready")
	}
	// Order keys like config.example.toml: version and advert_int after
	// priority.
	reorder(t, []string{"name", "interface", "vrid", "priority", "advert_int", "version", "auth_pass", "vips", "unicast_peers", "source_address", "preempt", "preempt_delay", "track_weight", "track_rise", "track_fall", "garp_repeat", "garp_delay", "garp_refresh", "notify_master", "notify_backup", "notify_fault"})
}

// reorder sorts t's keys by their position in order; unknown keys last.
func reorder(t *table, order []string) {
	pos := make(map[string]int, len(order))
	for i, k := range order {
		pos[k] = i
	}
	keys := make([]string, 0, len(t.keys))
	for _, k := range order {
		if t.has(k) {
			keys = append(keys, k)
		}
	}
	for _, k := range t.keys {
		if _, ok := pos[k]; !ok {
			keys = append(keys, k)
		}
	}
	t.keys = keys
}

func (c *kaConv) intArg(d *Node, lo, hi int) (int, bool) {
	if len(d.Args) < 2 {
		c.fail(d, "missing value; not imported")
		return 0, false
	}
	v, err := strconv.Atoi(d.Args[1])
	if err != nil || v < lo || v > hi {
		c.fail(d, "%q is not a number in %d..%d; not imported", d.Args[1], lo, hi)
		return 0, false
	}
	return v, true
}

// seconds parses keepalived's (possibly fractional) seconds.
func (c *kaConv) seconds(d *Node) (time.Duration, bool) {
	if len(d.Args) < 2 {
		c.fail(d, "missing value; not imported")
		return 0, false
	}
	f, err := strconv.ParseFloat(d.Args[1], 64)
	if err != nil || f < 0 || f > 1e6 || math.IsNaN(f) {
		c.fail(d, "%q is not a number of seconds; not imported", d.Args[1])
		return 0, false
	}
	return time.Duration(math.Round(f*1000)) * time.Millisecond, true
}

func (c *kaConv) garpLine(t *table, d *Node, kw string) {
	switch kw {
	case "garp_master_repeat":
		if v, ok := c.intArg(d, 0, 1<<20); ok {
			t.set("garp_repeat", tomlInt(v), "from "+c.from(d))
		}
	case "garp_master_delay":
		if v, ok := c.seconds(d); ok {
			t.set("garp_delay", tomlDur(v), "from "+c.from(d))
		}
	case "garp_master_refresh":
		if v, ok := c.seconds(d); ok {
			t.set("garp_refresh", tomlDur(v), "from "+c.from(d))
		}
	}
}

// auth returns the password of an "authentication { auth_type PASS ... }"
// block and the comment for it.
func (c *kaConv) auth(d *Node) (pass, from, typFrom string) {
	var typ, pw *Node
	for _, a := range d.Block {
		switch a.Keyword() {
		case "auth_type":
			typ = a
		case "auth_pass":
			pw = a
		default:
			c.fail(a, msgNotMapped)
		}
	}
	if typ == nil || len(typ.Args) < 2 || typ.Args[1] != "PASS" {
		c.fail(d, "kclb supports only auth_type PASS (VRRP version 2); not imported")
		return "", "", ""
	}
	if pw == nil || len(pw.Args) < 2 {
		c.fail(typ, "auth_type PASS without auth_pass; not imported")
		return "", "", ""
	}
	pass = pw.Args[1]
	from = "from " + c.from(pw)
	typFrom = "from " + c.from(typ)
	if len(pass) > 8 {
		c.warn(pw, "VRRP passwords are at most 8 bytes and keepalived silently used the first 8 (%q); so does the imported configuration", pass[:8])
		pass = pass[:8]
		from += " (first 8 bytes, as keepalived sends)"
	}
	c.warn(typ, "VRRP version 2 PASS authentication sends the password in clear text and protects nothing; once every node runs kclb, switch to version = 3 without auth_pass")
	return pass, from, typFrom
}

func (c *kaConv) vips(t *table, d *Node) {
	var vips []string
	iface := ""
	if v, ok := t.vals["interface"]; ok {
		iface = strings.Trim(v.val, `"`)
	}
	for _, a := range d.Block {
		s := a.Keyword()
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var addr netip.Addr
			addr, err = netip.ParseAddr(s)
			if err == nil {
				p = netip.PrefixFrom(addr, addr.BitLen())
			}
		}
		if err != nil {
			c.fail(a, "%q is not an address or address/prefix; not imported", s)
			continue
		}
		for i := 1; i < len(a.Args); i++ {
			switch a.Args[i] {
			case "dev":
				if i+1 < len(a.Args) && iface != "" && a.Args[i+1] != iface {
					c.fail(a, "kclb puts the virtual addresses on the instance's interface %s", iface)
				}
				i++
			case "label", "brd", "scope", "broadcast":
				i++
			default:
				c.fail(a, "option %q not supported", a.Args[i])
			}
		}
		vips = append(vips, p.String())
	}
	if len(vips) > 0 {
		t.set("vips", tomlStrings(vips), "from "+c.from(d))
	}
}

func (c *kaConv) unicastPeers(t *table, d *Node) {
	var peers []string
	for _, a := range d.Block {
		addr, err := netip.ParseAddr(a.Keyword())
		if err != nil {
			c.fail(a, "%q is not an IP address; not imported", a.Keyword())
			continue
		}
		if len(a.Args) > 1 {
			c.fail(a, "peer options are not supported")
		}
		peers = append(peers, addr.String())
	}
	if len(peers) > 0 {
		t.set("unicast_peers", tomlStrings(peers), "from "+c.from(d))
	}
}

// trackScript maps the first tracked vrrp_script's weight, fall and rise
// onto kclb's in-process pool tracking.
func (c *kaConv) trackScript(t *table, d *Node) bool {
	tracked := false
	for _, ref := range d.Block {
		name := ref.Keyword()
		s, ok := c.scripts[name]
		if !ok {
			c.fail(ref, "no vrrp_script %s; not imported", name)
			continue
		}
		if s == nil || tracked {
			c.fail(ref, "kclb tracks one health signal (the Keycloak pool); not imported")
			continue
		}
		c.scripts[name] = nil // used
		tracked = true
		weight, weightFrom := 0, c.from(s)+" (no weight: keepalived enters FAULT on failure)"
		for _, o := range s.Block {
			switch o.Keyword() {
			case "script":
				c.warn(o, "kclb tracks its own health in-process: its priority drops while no Keycloak server is ready, and if kclb dies its adverts stop; the script is not imported")
			case "interval", "timeout":
				// kclb reports pool health after every health round.
			case "weight":
				if len(o.Args) > 1 {
					if w, err := strconv.Atoi(o.Args[1]); err == nil {
						weight, weightFrom = w, "from "+c.from(o)+" (vrrp_script "+name+")"
					}
				}
			case "fall":
				if v, ok := c.intArg(o, 1, 1<<20); ok {
					t.set("track_fall", tomlInt(v), "from "+c.from(o)+" (vrrp_script "+name+")")
				}
			case "rise":
				if v, ok := c.intArg(o, 1, 1<<20); ok {
					t.set("track_rise", tomlInt(v), "from "+c.from(o)+" (vrrp_script "+name+")")
				}
			default:
				c.fail(o, msgNotMapped)
			}
		}
		if len(ref.Args) >= 3 && ref.Args[1] == "weight" {
			if w, err := strconv.Atoi(ref.Args[2]); err == nil {
				weight, weightFrom = w, "from "+c.from(ref)
			}
		}
		switch {
		case weight < 0:
			t.set("track_weight", tomlInt(min(-weight, 254)), weightFrom)
			if -weight < 50 {
				c.warn(ref, "track weight %d is small: a node stays master unless its priority minus %d falls below the peer's (a pair with priorities 110 and 100 needs more than 10; kclb's default is 50)", -weight, -weight)
			}
		case weight > 0:
			// keepalived adds a positive weight while the script succeeds;
			// kclb subtracts while unhealthy, so raise the base priority.
			p := 100
			if v, ok := t.vals["priority"]; ok {
				p, _ = strconv.Atoi(v.val)
			}
			np := min(p+weight, 254)
			t.set("priority", tomlInt(np), fmt.Sprintf("priority %d plus the script's weight %d (%s), which kclb subtracts while unhealthy", p, weight, weightFrom))
			t.set("track_weight", tomlInt(np-p), weightFrom)
		default:
			t.set("track_weight", tomlInt(254), weightFrom+"; kclb lowers the priority as far as it can instead")
			c.warn(ref, "weight 0 makes keepalived enter FAULT when the script fails; kclb lowers the priority by track_weight instead (254 here)")
		}
	}
	return tracked
}

// trackInterface accepts tracking of the instance's own interface, whose
// link kclb watches (link down: fault); others are not imported.
func (c *kaConv) trackInterface(t *table, d *Node) {
	iface := strings.Trim(t.vals["interface"].val, `"`)
	for _, a := range d.Block {
		if a.Keyword() == iface && len(a.Args) == 1 {
			c.info(a, "kclb watches the link of the instance's interface %s itself (link down: fault, the peer takes over)", iface)
			continue
		}
		c.fail(a, "kclb watches only the link of the instance's interface %q; tracking %s is not imported", iface, a.String())
	}
}
