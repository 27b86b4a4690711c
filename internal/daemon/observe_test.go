package daemon

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/kclb/kclb/proxy"
	"github.com/kclb/kclb/vrrp"
)

// TestAddStatsSumsEveryField: addStats covers every counter of
// proxy.Stats, including ones added after it was written.
func TestAddStatsSumsEveryField(t *testing.T) {
	var a, b proxy.Stats
	va, vb := reflect.ValueOf(&a).Elem(), reflect.ValueOf(&b).Elem()
	for i := range va.NumField() {
		if va.Field(i).Kind() != reflect.Uint64 {
			t.Fatalf("proxy.Stats.%s is %s: addStats sums uint64 fields only", va.Type().Field(i).Name, va.Field(i).Kind())
		}
		va.Field(i).SetUint(uint64(i + 1))
		vb.Field(i).SetUint(uint64(100 * (i + 1)))
	}
	sum := reflect.ValueOf(addStats(a, b))
	for i := range sum.NumField() {
		if got, want := sum.Field(i).Uint(), uint64(101*(i+1)); got != want {
			t.Errorf("%s = %d, want %d", sum.Type().Field(i).Name, got, want)
		}
	}
}

func TestVRRPStatusConversion(t *testing.T) {
	inst, err := vrrp.New(vrrp.Options{Name: "VI_1", Interface: "eth0", VRID: 51, Priority: 110,
		VIPs: []netip.Prefix{netip.MustParsePrefix("203.0.113.100/24")}})
	if err != nil {
		t.Fatal(err)
	}
	if adminVRRP(nil) != nil || len(vrrpMetrics(nil)) != 0 {
		t.Fatal("VRRP status without VRRP instances")
	}
	st := adminVRRP([]vrrp.Status{inst.Status()})
	if len(st) != 1 || st[0].Name != "VI_1" || st[0].State != "init" || st[0].Priority != 110 || st[0].ConfiguredPriority != 110 {
		t.Fatalf("status %+v", st)
	}
	m := vrrpMetrics([]vrrp.Status{inst.Status()})
	if len(m) != 1 || m[0].Instance != "VI_1" || m[0].State != "init" || len(m[0].States) != 4 || m[0].Priority != 110 {
		t.Fatalf("metrics %+v", m)
	}
}
