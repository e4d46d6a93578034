-- Job counters (pending_cnt ... aborted_cnt, bytes_done, bytes_total) are
-- moved by the transitions themselves, one aggregated UPDATE jobs per job
-- and transaction (dlengine/ledger/counters.py), in the transaction that
-- changes the rows. The per-row triggers of migration 0001 ran an
-- UPDATE jobs for every row (three per object over a claim and a report).
-- They kept the counters exact, so nothing is recounted here.
DROP TRIGGER objects_counts;
DROP TRIGGER objects_sizes;
