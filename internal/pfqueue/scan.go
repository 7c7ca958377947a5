package pfqueue

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// Queues are the message queues an import reads, in the order Postfix
// moves mail through them (maildrop first: not yet through cleanup).
var Queues = []string{"maildrop", "incoming", "active", "deferred", "hold"}

// Logs are the per-message logs kept beside the queues (bounce_log.c).
var Logs = []string{"bounce", "defer", "trace"}

// File is one queue file found in a Postfix queue directory.
type File struct {
	Queue string // maildrop, incoming, active, deferred or hold
	ID    string
	Path  string
	// Ready is false for a file whose writer had not finished it: not
	// mode 0700 (MAIL_QUEUE_STAT_READY, mail_stream.c), which Postfix
	// itself skips and eventually removes.
	Ready bool
	Info  fs.FileInfo
	// Logs are the paths of its bounce, defer and trace logs, by name.
	Logs map[string]string
}

// ValidID reports whether name has the shape of a Postfix queue ID,
// short (hex) or long (enable_long_queue_ids: [0-9A-Za-z] with a 'z'
// separator): what mail_queue_id_ok accepts, letters and digits only.
func ValidID(name string) bool {
	if len(name) < 6 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

// Scan lists the queue files under dir (Postfix's queue_directory) and
// their logs. Queue subdirectories may be hashed to any depth
// (hash_queue_depth, hash_queue_names), so each queue is walked whole;
// what does not look like a queue file is left alone.
func Scan(dir string) ([]File, error) {
	logs := map[string]map[string]string{} // ID → log name → path
	for _, l := range Logs {
		err := walk(filepath.Join(dir, l), func(id, path string, _ fs.FileInfo) {
			if logs[id] == nil {
				logs[id] = map[string]string{}
			}
			logs[id][l] = path
		})
		if err != nil {
			return nil, err
		}
	}
	var out []File
	for _, q := range Queues {
		err := walk(filepath.Join(dir, q), func(id, path string, fi fs.FileInfo) {
			out = append(out, File{Queue: q, ID: id, Path: path, Info: fi,
				Ready: fi.Mode().Perm()&0o700 == 0o700, Logs: logs[id]})
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// walk calls f for each regular file under root whose name is a queue
// ID, in name order; a missing root is an empty queue.
func walk(root string, f func(id, path string, fi fs.FileInfo)) error {
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path == root {
				return filepath.SkipDir
			}
			return err
		}
		if d.Type().IsRegular() && ValidID(d.Name()) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	for _, p := range files {
		fi, err := os.Lstat(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return err
		}
		f(filepath.Base(p), p, fi)
	}
	return nil
}
