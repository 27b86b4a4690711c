package config

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
)

// PairFingerprint hashes, part by part, what must be the same on both
// instances of an edge pair, so that they can tell each other when it is
// not (internal/peer): "servers" (names, addresses, routes, backup flags
// and DNS discovery), "affinity_key" (whether affinity is on, its cookie
// name and an id of the key, never the key), "vrrp" (instance names,
// VRIDs, versions, VIPs, advert intervals; not priorities or interfaces,
// which differ by design), "paths" (the path policy) and "headers" (the
// security headers and forwarding header families). Each value is 16 hex
// digits of a SHA-256.
func (c *Config) PairFingerprint() map[string]string {
	type server struct {
		Name, Address, Route string
		Backup               bool
	}
	servers := make([]server, 0, len(c.Backend.Servers))
	for _, s := range c.Backend.Servers {
		servers = append(servers, server{s.Name, s.Address, s.Route, s.Backup})
	}
	slices.SortFunc(servers, func(a, b server) int { return cmp.Compare(a.Name, b.Name) })

	keyID := ""
	if c.Affinity.Enabled {
		sum := sha256.Sum256(append([]byte("kclb affinity key id\x00"), c.Affinity.Key...))
		keyID = hex.EncodeToString(sum[:8])
	}

	type vrrp struct {
		Name      string
		VRID      int
		Version   int
		VIPs      []string
		AdvertInt string
	}
	vrrps := make([]vrrp, 0, len(c.VRRP.Instances))
	for _, v := range c.VRRP.Instances {
		vips := make([]string, 0, len(v.VIPs))
		for _, p := range v.VIPs {
			vips = append(vips, p.String())
		}
		slices.Sort(vips)
		vrrps = append(vrrps, vrrp{v.Name, v.VRID, v.Version, vips, v.AdvertInt.String()})
	}
	slices.SortFunc(vrrps, func(a, b vrrp) int { return cmp.Compare(a.Name, b.Name) })

	b := c.Backend
	return map[string]string{
		"servers":      partHash(servers, b.DNSName, b.DNSPort, b.DNSManagementPort),
		"affinity_key": partHash(c.Affinity.Enabled, c.Affinity.Cookie, keyID),
		"vrrp":         partHash(vrrps),
		"paths":        partHash(c.Paths),
		"headers":      partHash(c.Headers, b.ProxyHeaders.String(), b.ClientCertHeader.String(), b.TrustedProxies),
	}
}

// partHash is 16 hex digits of the SHA-256 of the values' JSON.
func partHash(vs ...any) string {
	b, _ := json.Marshal(vs) // plain data: strings, numbers, prefixes
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
