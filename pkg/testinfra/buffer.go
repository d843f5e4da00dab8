package testinfra

import (
	"bytes"
	"sync"
)

// Buffer is an io.Writer safe for concurrent use: hand it to a service
// under test as its log output (stdout) and read what it wrote.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
