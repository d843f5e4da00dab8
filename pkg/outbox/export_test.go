package outbox

// SetBeforeRenew and SetBeforeMark install hooks that run before each
// lease renewal and each mark UPDATE (set them before Run): a test blocks
// them to act out a frozen leader.
func SetBeforeRenew(r *Relay, f func()) { r.beforeRenew = f }
func SetBeforeMark(r *Relay, f func())  { r.beforeMark = f }
