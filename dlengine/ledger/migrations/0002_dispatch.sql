-- Objects of range and backend jobs are inserted by the supervisor's
-- dispatcher, page by page, after submission.
ALTER TABLE jobs ADD COLUMN scheduled_cnt INTEGER NOT NULL DEFAULT 0;  -- object rows inserted so far
ALTER TABLE jobs ADD COLUMN cursor TEXT;                                -- where dispatching resumes
UPDATE jobs SET scheduled_cnt = total;
