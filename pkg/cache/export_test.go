package cache

// NearFloor is the highest version of id c's near layer knows of.
func NearFloor[V any](c *Cache[V], id string) int64 {
	c.near.mu.RLock()
	defer c.near.mu.RUnlock()
	if it := c.near.items[id]; it != nil {
		return it.floor
	}
	return 0
}
