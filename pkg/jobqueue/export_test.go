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
