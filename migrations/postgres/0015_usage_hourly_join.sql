-- The hourly rollup of an UPDATE joins the statement's old and new rows (transition tables).
-- PostgreSQL estimates a transition table at one row whatever it holds, so it planned a nested
-- loop: for a batch of n updated sessions n² comparisons (measured: 35 ms for 290 sessions, most
-- of an accounting batch's time; a large batch drained from the accounting spool took seconds).
-- Without nested loops in this function the join is a hash join: linear in the batch.
ALTER FUNCTION usage_hourly_updated() SET enable_nestloop = off;
