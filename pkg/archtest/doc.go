// Package archtest holds the architecture test: the dependency rules of
// STYLE.md checked on the real import graph (go list), so that a forker can
// lift a building block or a service out without dragging the rest along.
//
// Rules:
//  1. A package under pkg/ never imports a package under services/.
//  2. A package under services/<a>/ imports another service <b> only through
//     services/<b>/<b>api (its public contract: DTOs, event payloads, client).
//  3. No binary (main package) compiles in a module of BannedModules
//     (abandoned ones: hystrix-go and handy, which go-kit's circuitbreaker
//     package drags in), checked on `go list -deps` (BannedDeps).
//
// Go's internal/ rule already stops services/<b>/internal/... from being
// imported elsewhere; rule 2 also covers non-internal packages such as
// migrations and cmd. Test files count: a test that imports another
// service's store couples the two as surely as production code does.
//
// ShapeViolations checks the folder shape of every service, LongFuncs and
// LongTestFiles the sizes that keep code readable: no production function
// over MaxFuncLines (chaos/ drills exempt), no test file over
// MaxTestFileLines.
package archtest
