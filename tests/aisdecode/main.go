// Command aisdecode decodes answers of dlengine's API with AIStore's wire
// types, copied from aistore's ext/dload/api.go and cmn/err.go (the fields
// its clients read), with Go's encoding/json (AIStore uses jsoniter in its
// standard-library-compatible mode: the same rules for these types).
//
// Input: one JSON object per line, {"kind": "status|list|post|error", "body": ...}.
// Output: one line per input, "ok" or the decoder's error.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"time"
)

type Job struct {
	ID            string    `json:"id"`
	XactID        string    `json:"xaction_id"`
	Description   string    `json:"description"`
	StartedTime   time.Time `json:"started_time"`
	FinishedTime  time.Time `json:"finished_time"`
	FinishedCnt   int       `json:"finished_cnt"`
	ScheduledCnt  int       `json:"scheduled_cnt"`
	SkippedCnt    int       `json:"skipped_cnt"`
	ErrorCnt      int       `json:"error_cnt"`
	Total         int       `json:"total"`
	AllDispatched bool      `json:"all_dispatched"`
	Aborted       bool      `json:"aborted"`
}

type TaskDlInfo struct {
	Name       string    `json:"name"`
	Downloaded int64     `json:"downloaded,string"`
	Total      int64     `json:"total,string,omitempty"`
	StartTime  time.Time `json:"start_time,omitempty"`
	EndTime    time.Time `json:"end_time,omitempty"`
}

type TaskErrInfo struct {
	Name string `json:"name"`
	Err  string `json:"error"`
}

type StatusResp struct {
	Job
	CurrentTasks  []TaskDlInfo  `json:"current_tasks,omitempty"`
	FinishedTasks []TaskDlInfo  `json:"finished_tasks,omitempty"`
	Errs          []TaskErrInfo `json:"download_errors,omitempty"`
}

type DlPostResp struct {
	ID string `json:"id"`
}

type ErrHTTP struct {
	TypeCode   string `json:"tcode,omitempty"`
	Message    string `json:"message"`
	Method     string `json:"method"`
	URLPath    string `json:"url_path"`
	RemoteAddr string `json:"remote_addr"`
	Caller     string `json:"caller"`
	Node       string `json:"node"`
	Status     int    `json:"status"`
}

type input struct {
	Kind string          `json:"kind"`
	Body json.RawMessage `json:"body"`
}

func decode(in input) error {
	var target any
	switch in.Kind {
	case "status":
		target = &StatusResp{}
	case "list":
		target = &[]*Job{}
	case "post":
		target = &DlPostResp{}
	case "error":
		target = &ErrHTTP{}
	default:
		return fmt.Errorf("unknown kind %q", in.Kind)
	}
	return json.Unmarshal(in.Body, target)
}

func main() {
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 64<<20)
	for scanner.Scan() {
		var in input
		err := json.Unmarshal(scanner.Bytes(), &in)
		if err == nil {
			err = decode(in)
		}
		if err != nil {
			fmt.Println(err)
		} else {
			fmt.Println("ok")
		}
	}
}
