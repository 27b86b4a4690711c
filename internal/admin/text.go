package admin

import (
	"cmp"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// This file is the client side's text: what the operator commands print
// from the API's answers.

// ANSI colours for states.
const (
	ansiReset  = "\x1b[0m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiRed    = "\x1b[31m"
	ansiBlue   = "\x1b[34m"
	ansiGrey   = "\x1b[90m"
)

func stateColor(s string) string {
	switch s {
	case "up", "ready", "master":
		return ansiGreen
	case "drain", "down", "backup":
		return ansiYellow
	case "dead", "fault":
		return ansiRed
	case "starting":
		return ansiBlue
	case "maint":
		return ansiGrey
	}
	return ""
}

// WriteStatus writes st as `kclb status` shows it: the edge, its
// listeners, VRRP instances and pair, then a table of the servers. With
// color, states are coloured with ANSI codes, added after the columns are
// aligned so they do not disturb the widths.
func WriteStatus(w io.Writer, st *Status, color bool) {
	fmt.Fprintf(w, "kclb %s (version %s), up %s", st.Name, st.Version, (time.Duration(st.UptimeSeconds) * time.Second).String())
	if st.Panic {
		fmt.Fprint(w, ", PANIC MODE")
	}
	if !st.AnyAvailable {
		fmt.Fprint(w, ", NO SERVER AVAILABLE")
	}
	fmt.Fprintln(w)
	for _, l := range st.Listeners {
		tls := ""
		if l.TLS {
			tls = " (tls)"
		}
		fmt.Fprintf(w, "listener %s %s%s\n", l.Name, l.Addr, tls)
	}
	for _, v := range st.VRRP {
		state := v.State
		if color {
			state = stateColor(v.State) + state + ansiReset
		}
		fmt.Fprintf(w, "vrrp %s %s priority %d", v.Name, state, v.Priority)
		if v.Master != "" {
			fmt.Fprintf(w, " master %s", v.Master)
		}
		if v.Health != "" && v.Health != "ok" {
			fmt.Fprintf(w, " tracking %s", v.Health)
		}
		if v.Standby {
			fmt.Fprint(w, " HANDED OVER (kclb handover --back returns it)")
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "  adverts sent %d received %d (as master %d, priority 0 %d), timer lag max %.1fms, errors %d, dropped %s\n",
			v.AdvertsSent, v.AdvertsReceived, v.AdvertsAsMaster, v.Resignations, v.MaxTimerLagMillis, v.Errors, FormatDrops(v.Drops))
	}
	printPair(w, st)
	fmt.Fprintln(w)
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	peerCol := ""
	if st.Pair != nil {
		peerCol = "PEER\t"
	}
	fmt.Fprintln(tw, "SERVER\tHEALTH\tADMIN\t"+peerCol+"INFLIGHT\tQUEUED\tREQUESTS\tERRORS\tREDISP\tLAST10S\tIDLE\tCHECK P/F\tSINCE\tREASON")
	for _, s := range st.Servers {
		idle := "never"
		if s.IdleSeconds != nil {
			idle = (time.Duration(*s.IdleSeconds*1000) * time.Millisecond).Round(100 * time.Millisecond).String()
		}
		check := "-"
		if s.Check != nil {
			check = fmt.Sprintf("%.1fms %d/%d", s.Check.LatencyMillis, s.Passes, s.Fails)
		}
		since := time.Since(s.Since).Round(time.Second).String()
		recent := "-"
		if s.RecentRequests != nil {
			recent = fmt.Sprint(*s.RecentRequests)
		}
		name := s.Name
		if s.Backup {
			name += " (backup)"
		}
		adminCol := s.Admin
		if st.Pair != nil {
			adminCol += "\t" + cmp.Or(s.PeerAdmin, "?")
			if s.PeerAdmin != "" && s.PeerAdmin != s.Admin {
				adminCol += " DIFFERS"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", name, s.Health, adminCol,
			s.InFlight, s.Queued, s.Requests, s.Errors, s.Redispatches, recent, idle, check, since, s.Reason)
	}
	tw.Flush()
	lines := strings.SplitAfter(b.String(), "\n")
	for i, line := range lines {
		if color && i > 0 && i <= len(st.Servers) {
			s := st.Servers[i-1]
			line = colorField(line, len(s.Name), s.Health)
			line = colorAfter(line, s.Health, s.Admin)
		}
		io.WriteString(w, line)
	}
}

// printPair writes the [pair] lines of the status: the peer, whether it
// answers, the parts of the configuration that differ, refused messages.
func printPair(w io.Writer, st *Status) {
	p := st.Pair
	if p == nil {
		return
	}
	peer := p.Peer
	if p.PeerName != "" {
		peer += " (" + p.PeerName + ")"
	}
	contact := "never"
	if !p.LastContact.IsZero() {
		contact = time.Since(p.LastContact).Round(100*time.Millisecond).String() + " ago"
	}
	if p.Reachable {
		fmt.Fprintf(w, "pair peer %s reachable, last contact %s\n", peer, contact)
	} else {
		fmt.Fprintf(w, "pair peer %s UNREACHABLE (last contact %s): %s\n", peer, contact, p.Error)
	}
	if len(p.Drift) > 0 {
		fmt.Fprintf(w, "pair CONFIGURATION DRIFT: %s differ from the peer's\n", strings.Join(p.Drift, ", "))
	}
	var disagree []string
	for _, s := range st.Servers {
		if s.PeerAdmin != "" && s.PeerAdmin != s.Admin {
			disagree = append(disagree, fmt.Sprintf("%s (%s here, %s there)", s.Name, s.Admin, s.PeerAdmin))
		}
	}
	if len(disagree) > 0 {
		fmt.Fprintf(w, "pair DISAGREES on %s\n", strings.Join(disagree, ", "))
	}
	if len(p.Dropped) > 0 {
		fmt.Fprintf(w, "pair messages dropped %s\n", FormatDrops(p.Dropped))
	}
}

// FormatDrops prints VRRP drop counters as "0" or "12 (unknown_peer 10, ttl 2)".
func FormatDrops(d map[string]uint64) string {
	var total uint64
	keys := make([]string, 0, len(d))
	for k, n := range d {
		total += n
		keys = append(keys, k)
	}
	if total == 0 {
		return "0"
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, d[k]))
	}
	return fmt.Sprintf("%d (%s)", total, strings.Join(parts, ", "))
}

// colorField colours the word starting after the name column.
func colorField(line string, nameLen int, word string) string {
	i := strings.Index(line[nameLen:], word)
	if i < 0 {
		return line
	}
	i += nameLen
	return line[:i] + stateColor(word) + word + ansiReset + line[i+len(word):]
}

// colorAfter colours the first occurrence of word after prev.
func colorAfter(line, prev, word string) string {
	p := strings.Index(line, prev+ansiReset)
	if p < 0 {
		return line
	}
	p += len(prev + ansiReset)
	i := strings.Index(line[p:], word)
	if i < 0 {
		return line
	}
	i += p
	return line[:i] + stateColor(word) + word + ansiReset + line[i+len(word):]
}

// HandoverDone reports whether a handover (or its end) has taken effect:
// every instance Backup of a known peer, or, after --back, every instance
// Master again (for an edge whose priority is the higher one).
func HandoverDone(list []VRRPStatus, back bool) (bool, string) {
	for _, v := range list {
		if back {
			if v.Standby || v.State != "master" {
				return false, ""
			}
			continue
		}
		if v.State != "backup" || v.Master == "" {
			return false, ""
		}
	}
	if back {
		return true, "priorities restored: " + VRRPSummary(list)
	}
	return true, "the peer holds the VIPs: " + VRRPSummary(list)
}

// VRRPSummary is one line of the VRRP instances: name, state, priority
// and the Master when known.
func VRRPSummary(list []VRRPStatus) string {
	s := ""
	for i, v := range list {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %s priority %d", v.Name, v.State, v.Priority)
		if v.Master != "" {
			s += " master " + v.Master
		}
	}
	return s
}
