-- What each relay node last reported about itself (issue 8, operator console): a JSON snapshot
-- of its in-process metrics (peers, handshakes, drops by admission stage), written with its
-- heartbeat (`last_seen`) so any node's console can show every relay.
ALTER TABLE relay_nodes ADD COLUMN stats TEXT;
