package main

// insertions are the places a new service is wired in, filled in below
// (each file carries its marker comments).
var insertions = []insertion{}
