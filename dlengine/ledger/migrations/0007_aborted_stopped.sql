-- An aborted job has finished (finished_time, which AIStore's clients read
-- as "the job ended") only once its last running object has stopped, so a
-- job that looks finished can always be removed. The abort itself sets it
-- when nothing was running (ledger/jobs.py abort_job).
CREATE TRIGGER jobs_aborted_stopped AFTER UPDATE OF running_cnt ON jobs
WHEN NEW.state = 'aborted' AND NEW.running_cnt = 0 AND NEW.finished_time IS NULL
BEGIN
    UPDATE jobs SET finished_time = (julianday('now') - 2440587.5) * 86400.0 WHERE seq = NEW.seq;
END;
