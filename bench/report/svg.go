package report

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

var palette = map[string]string{
	"direct":  "#7f7f7f",
	"kclb":    "#1f77b4",
	"haproxy": "#d62728",
	"nginx":   "#2ca02c",
}

var fallbackColors = []string{"#9467bd", "#8c564b", "#e377c2", "#17becf"}

func colorOf(target string, i int) string {
	if c, ok := palette[target]; ok {
		return c
	}
	return fallbackColors[i%len(fallbackColors)]
}

func esc(s string) string { return html.EscapeString(s) }

type svg struct {
	b    strings.Builder
	w, h int
}

func newSVG(w, h int, title string) *svg {
	s := &svg{w: w, h: h}
	fmt.Fprintf(&s.b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&s.b, "<title>%s</title>\n", esc(title))
	fmt.Fprintf(&s.b, `<rect x="0" y="0" width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&s.b, `<text x="%d" y="20" text-anchor="middle" font-size="14" font-weight="bold">%s</text>`+"\n", w/2, esc(title))
	return s
}

func (s *svg) text(x, y float64, anchor, txt string, extra string) {
	fmt.Fprintf(&s.b, `<text x="%.1f" y="%.1f" text-anchor="%s"%s>%s</text>`+"\n", x, y, anchor, extra, esc(txt))
}

func (s *svg) line(x1, y1, x2, y2 float64, stroke string, width float64) {
	fmt.Fprintf(&s.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%.1f"/>`+"\n", x1, y1, x2, y2, stroke, width)
}

func (s *svg) rect(x, y, w, h float64, fill, tooltip string) {
	fmt.Fprintf(&s.b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`+"\n", x, y, w, h, fill, esc(tooltip))
}

func (s *svg) legend(x, y float64, targets []string) {
	for i, t := range targets {
		yy := y + float64(i)*16
		fmt.Fprintf(&s.b, `<rect x="%.1f" y="%.1f" width="10" height="10" fill="%s"/>`+"\n", x, yy-9, colorOf(t, i))
		s.text(x+14, yy, "start", t, "")
	}
}

func (s *svg) close(w io.Writer) error {
	s.b.WriteString("</svg>\n")
	_, err := io.WriteString(w, s.b.String())
	return err
}

// WriteThroughputSVG draws, per closed-loop throughput scenario, one bar per target:
// median req/s relative to HAProxy (or to the fastest target when HAProxy
// did not run), labelled with the absolute median.
func WriteThroughputSVG(w io.Writer, r *Report) error {
	var scs []*Scenario
	for i := range r.Scenarios {
		if r.Scenarios[i].Kind == Throughput && !r.Scenarios[i].OpenLoop && len(r.Scenarios[i].Runs) > 0 {
			scs = append(scs, &r.Scenarios[i])
		}
	}
	const left, right, top, bottom = 60.0, 110.0, 40.0, 70.0
	width := max(480, int(left+right)+len(scs)*len(r.Targets)*34+len(scs)*24)
	height := 360
	s := newSVG(width, height, "Median throughput relative to HAProxy (label: req/s)")
	plotW, plotH := float64(width)-left-right, float64(height)-top-bottom
	type bar struct {
		target string
		rel    float64
		rps    float64
	}
	groups := make([][]bar, len(scs))
	maxRel := 1.0
	for gi, sc := range scs {
		sums := Summarize(sc, r.Targets)
		ref := 0.0
		if ha := find(sums, "haproxy"); ha != nil {
			ref = ha.RPS
		} else {
			for _, x := range sums {
				ref = max(ref, x.RPS)
			}
		}
		for _, x := range sums {
			rel := 0.0
			if ref > 0 {
				rel = x.RPS / ref
			}
			groups[gi] = append(groups[gi], bar{x.Target, rel, x.RPS})
			maxRel = max(maxRel, rel)
		}
	}
	maxRel = math.Ceil(maxRel*4) / 4
	y := func(v float64) float64 { return top + plotH*(1-v/maxRel) }
	for v := 0.0; v <= maxRel+1e-9; v += 0.25 {
		s.line(left, y(v), left+plotW, y(v), "#dddddd", 1)
		s.text(left-6, y(v)+4, "end", fmt.Sprintf("%.2f×", v), "")
	}
	s.line(left, y(1), left+plotW, y(1), "#d62728", 1)
	if len(scs) > 0 {
		gw := plotW / float64(len(scs))
		for gi, g := range groups {
			bw := min(30, (gw-16)/float64(max(len(g), 1)))
			x0 := left + gw*float64(gi) + (gw-bw*float64(len(g)))/2
			for bi, b := range g {
				x := x0 + bw*float64(bi)
				idx := indexOf(r.Targets, b.target)
				s.rect(x+1, y(b.rel), bw-2, y(0)-y(b.rel), colorOf(b.target, idx),
					fmt.Sprintf("%s %s: %.0f req/s (%.2f×)", scs[gi].Name, b.target, b.rps, b.rel))
				s.text(x+bw/2, y(b.rel)-3, "middle", compact(b.rps), ` font-size="9"`)
			}
			s.text(left+gw*float64(gi)+gw/2, top+plotH+16, "middle", scs[gi].Name, ` font-size="11"`)
		}
	}
	s.line(left, top+plotH, left+plotW, top+plotH, "black", 1)
	s.legend(left+plotW+14, top+12, r.Targets)
	return s.close(w)
}

func indexOf(list []string, v string) int {
	for i, x := range list {
		if x == v {
			return i
		}
	}
	return 0
}

func compact(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.1fk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}

// WriteLatencySVG draws latency by percentile for each target of sc, with
// the percentile axis in "nines" (50 %, 90 %, 99 %, 99.9 %, 99.99 %).
func WriteLatencySVG(w io.Writer, r *Report, sc *Scenario) error {
	sums := Summarize(sc, r.Targets)
	const left, right, top, bottom = 70.0, 110.0, 40.0, 50.0
	width, height := 720, 360
	s := newSVG(width, height, "Latency by percentile (log scale): "+sc.Name)
	plotW, plotH := float64(width)-left-right, float64(height)-top-bottom
	const maxNines = 4.0
	// Latency on a log scale, whole decades from below the smallest p50
	// to above the largest p99.99.
	loMs, hiMs := math.Inf(1), 0.0
	for _, x := range sums {
		if x.Latency.Count() == 0 {
			continue
		}
		loMs = min(loMs, float64(max(x.Latency.Quantile(0.01), 1))/1e6)
		hiMs = max(hiMs, float64(x.Latency.Quantile(1-math.Pow(10, -maxNines)))/1e6)
	}
	if hiMs == 0 {
		loMs, hiMs = 0.1, 1
	}
	loExp := math.Floor(math.Log10(loMs))
	hiExp := math.Max(math.Ceil(math.Log10(hiMs)), loExp+1)
	xOf := func(n float64) float64 { return left + plotW*n/maxNines }
	yOf := func(v float64) float64 {
		v = math.Min(math.Max(v, math.Pow(10, loExp)), math.Pow(10, hiExp))
		return top + plotH*(1-(math.Log10(v)-loExp)/(hiExp-loExp))
	}
	for e := loExp; e <= hiExp; e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if e == hiExp && m > 1 {
				break
			}
			stroke := "#eeeeee"
			if m == 1 {
				stroke = "#cccccc"
			}
			s.line(left, yOf(v), left+plotW, yOf(v), stroke, 1)
			s.text(left-6, yOf(v)+4, "end", fmt.Sprintf("%g ms", v), "")
		}
	}
	for n, label := range []string{"0%", "90%", "99%", "99.9%", "99.99%"} {
		s.line(xOf(float64(n)), top, xOf(float64(n)), top+plotH, "#dddddd", 1)
		s.text(xOf(float64(n)), top+plotH+16, "middle", label, "")
	}
	s.text(left+plotW/2, top+plotH+36, "middle", "percentile", "")
	var shown []string
	for _, x := range sums {
		if x.Latency.Count() == 0 {
			continue
		}
		shown = append(shown, x.Target)
		var pts []string
		for i := 0; i <= 80; i++ {
			n := maxNines * float64(i) / 80
			q := 1 - math.Pow(10, -n)
			v := float64(x.Latency.Quantile(q)) / 1e6
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xOf(n), yOf(v)))
		}
		fmt.Fprintf(&s.b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"><title>%s</title></polyline>`+"\n",
			colorOf(x.Target, indexOf(r.Targets, x.Target)), strings.Join(pts, " "), esc(x.Target))
	}
	s.line(left, top+plotH, left+plotW, top+plotH, "black", 1)
	s.line(left, top, left, top+plotH, "black", 1)
	s.legend(left+plotW+14, top+12, shown)
	return s.close(w)
}
