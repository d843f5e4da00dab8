package jobqueue

import "context"

// SetBeforeListen makes c's listener call f before each LISTEN (to hold
// the listener back in tests). Call it before c's first long poll.
func SetBeforeListen(c *Client, f func()) { c.notify.beforeListen = f }

// AckSetting returns synchronous_commit as an acknowledgement statement of
// c sees it.
func AckSetting(ctx context.Context, c *Client) (string, error) {
	var s string
	err := c.ackDB(c.pool).QueryRow(ctx, `SELECT current_setting('synchronous_commit')`).Scan(&s)
	return s, err
}

// SetBeforeCoalescedReceive makes c call f with the number of receive
// calls before each coalesced receive statement. Call it before the
// first receive.
func SetBeforeCoalescedReceive(c *Client, f func(calls int)) { c.receives.beforeRun = f }

// SetBeforeCoalescedDelete does the same for deletes on the pool.
func SetBeforeCoalescedDelete(c *Client, f func(calls int)) { c.deletes.beforeRun = f }

// WaitingReceives returns the receive calls of queue (default visibility
// timeout) waiting for a coalesced statement.
func WaitingReceives(c *Client, queue string) int {
	return c.receives.waiting(receiveKey{queue: queue})
}

// WaitingDeletes returns the delete calls waiting for a coalesced
// statement.
func WaitingDeletes(c *Client) int { return c.deletes.waiting(struct{}{}) }
