package kcsim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
)

// jwtHeader is the fixed header of every fake token.
var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS512","typ":"JWT","kid":"kcsim-fake-hs512-key"}`))

// fakeJWT returns header.payload.signature where the payload is claims
// marshalled to JSON, padded with a "pad" member so the whole token is about
// size bytes. The signature is random bytes of HS512 length; nothing verifies it.
func fakeJWT(claims map[string]any, size int) string {
	body, _ := json.Marshal(claims)
	sig := randToken(64)
	// base64 grows by 4/3; leave room for the pad member itself.
	fixed := len(jwtHeader) + len(sig) + 2 + (len(body)+4)*4/3
	if pad := (size-fixed)*3/4 - len(`,"pad":""`); pad > 0 {
		claims["pad"] = strings.Repeat("p", pad)
		body, _ = json.Marshal(claims)
	}
	return jwtHeader + "." + base64.RawURLEncoding.EncodeToString(body) + "." + sig
}

// decodeJWT returns the payload of a token made by fakeJWT into v.
func decodeJWT(tok string, v any) error {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return fmt.Errorf("kcsim: token has %d parts, want 3", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return fmt.Errorf("kcsim: token payload: %w", err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("kcsim: token payload: %w", err)
	}
	return nil
}
