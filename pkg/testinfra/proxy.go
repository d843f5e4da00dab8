package testinfra

import (
	"net"
	"sync"
	"testing"
)

// Proxy is a TCP proxy a test puts between code under test and a server,
// to cut the link mid-run (Down, Up) or make it hang (Blackhole) without
// touching the server. Its address stays the same throughout.
type Proxy struct {
	tb     testing.TB
	target string
	addr   string

	mu        sync.Mutex
	ln        net.Listener
	conns     map[net.Conn]struct{}
	blackhole bool
	wg        sync.WaitGroup
}

// NewProxy listens on a free local port and forwards to target (host:port).
// It is closed when the test ends.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	p := &Proxy{tb: tb, target: target, conns: map[net.Conn]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testinfra: proxy listen: %v", err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	tb.Cleanup(func() {
		p.Down()
		p.wg.Wait()
	})
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.addr }

// Down closes the listener and every connection: clients see connection
// refused (like a stopped server) until Up.
func (p *Proxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

// Up listens again on the same address.
func (p *Proxy) Up() {
	p.tb.Helper()
	p.mu.Lock()
	p.blackhole = false
	listening := p.ln != nil
	p.mu.Unlock()
	if listening {
		return
	}
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.tb.Fatalf("testinfra: proxy listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// Blackhole keeps accepting connections and forwards nothing in either
// direction, on new and existing connections alike (a paused server, a
// dropped route): clients wait for their own timeouts. Up ends it; bytes
// dropped meanwhile stay dropped.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	p.blackhole = true
	p.mu.Unlock()
}

func (p *Proxy) inBlackhole() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blackhole
}

// pipe copies src to dst, dropping what it reads while the proxy is a
// blackhole.
func (p *Proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.inBlackhole() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.handle(c)
			}()
		}
	}()
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil && !p.blackhole {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
	_ = c.Close()
}

func (p *Proxy) handle(c net.Conn) {
	defer p.untrack(c)
	if !p.track(c) {
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer p.untrack(up)
	if !p.track(up) {
		return
	}
	go func() { p.pipe(up, c); _ = up.Close() }()
	p.pipe(c, up)
}
