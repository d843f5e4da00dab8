package ratelimit

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// ClientAddr is the address an anonymous request is limited by: the
// peer's (r.RemoteAddr), unless the peer is one of trusted, the proxies in
// front of the service (a CDN such as Varnish, a load balancer, the web
// service), which append the address they received the request from to
// X-Forwarded-For. Then it is the rightmost X-Forwarded-For entry that is
// not a trusted proxy: entries left of it were written by the client and
// are never believed, so a client cannot choose its own bucket. An entry
// that is not an address stops the walk at the proxy that passed it on;
// when every entry is a trusted proxy, the leftmost is the client. With no
// trusted proxies X-Forwarded-For is ignored. ok is false when RemoteAddr
// is not an address (a test's or an in-process listener's).
func ClientAddr(r *http.Request, trusted []netip.Prefix) (addr netip.Addr, ok bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	addr = ap.Addr().Unmap()
	if !isTrusted(addr, trusted) {
		return addr, true
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		entries := strings.Split(hops[i], ",")
		for j := len(entries) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(entries[j]))
			if err != nil {
				return addr, true
			}
			addr = a.Unmap()
			if !isTrusted(addr, trusted) {
				return addr, true
			}
		}
	}
	return addr, true
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// AddrKey is the bucket key of a client address: "ip:" and the address
// for IPv4, "ip:" and its /64 for IPv6, which is what one host or one
// subscriber usually gets, so that a client cannot take a fresh bucket
// with each of its addresses.
func AddrKey(a netip.Addr) string {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return "ip:" + p.String()
	}
	return "ip:" + a.String()
}

// ParseProxies parses trusted proxies: addresses ("10.0.0.7") and CIDR
// prefixes ("10.0.0.0/8", "::1/128"), as RATE_LIMIT_TRUSTED_PROXIES
// lists them.
func ParseProxies(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a CIDR prefix", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

type clientAddrKey struct{}

// WithClientAddr returns ctx carrying a, the client address a request was
// limited by, for a proxy-like handler (the web service) to pass on to
// the services it calls in X-Forwarded-For (ForwardedFor).
func WithClientAddr(ctx context.Context, a netip.Addr) context.Context {
	return context.WithValue(ctx, clientAddrKey{}, a)
}

// ForwardedFor is the X-Forwarded-For value for an outgoing request made
// on behalf of ctx's client (WithClientAddr), or "" when ctx has none.
// The called service counts the request against that client's bucket
// when it lists the caller in RATE_LIMIT_TRUSTED_PROXIES, instead of
// against the caller's own, which every visitor would share.
func ForwardedFor(ctx context.Context) string {
	if a, ok := ctx.Value(clientAddrKey{}).(netip.Addr); ok && a.IsValid() {
		return a.String()
	}
	return ""
}
