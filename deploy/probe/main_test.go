package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestProbePassesOnlyA200(t *testing.T) {
	t.Parallel()
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	defer ok.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }))
	defer down.Close()
	if err := probe(ok.URL); err != nil {
		t.Errorf("healthy: %v", err)
	}
	if err := probe(down.URL); err == nil {
		t.Error("503 passed")
	}
	if err := probe("http://127.0.0.1:1/readyz"); err == nil {
		t.Error("closed port passed")
	}
}
