package queuelock

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The lock excludes a second holder, in this process or another, names
// the holder, and is free again once the holder releases it or dies.
func TestExclusive(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	if _, err := TryAcquire(dir); !errors.Is(err, ErrNoQueue) {
		t.Fatalf("TryAcquire on a missing directory: %v, want ErrNoQueue", err)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("TryAcquire created the queue directory")
	}
	l, err := Acquire(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, Name)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("lock file: %v %v", st, err)
	}
	_, err = TryAcquire(dir)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("by process %d", os.Getpid())) {
		t.Fatalf("second TryAcquire: %v, want ErrLocked naming PID %d", err, os.Getpid())
	}
	// Acquire waits for the holder.
	go func() { time.Sleep(200 * time.Millisecond); l.Release() }()
	start := time.Now()
	l2, err := Acquire(dir, 5*time.Second)
	if err != nil {
		t.Fatalf("Acquire while the holder lets go: %v", err)
	}
	if time.Since(start) < 150*time.Millisecond {
		t.Errorf("Acquire did not wait for the holder (%v)", time.Since(start))
	}
	if _, err := Acquire(dir, 100*time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Errorf("Acquire with a holder that stays: %v, want ErrLocked", err)
	}
	l2.Release()

	// Another process: held while it lives, free once it is killed.
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHold$")
	cmd.Env = append(os.Environ(), "QUEUELOCK_HOLD="+dir)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf[:4]) != "held" {
		t.Fatalf("helper: %q %v", buf, err)
	}
	_, err = TryAcquire(dir)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("by process %d", cmd.Process.Pid)) {
		t.Errorf("TryAcquire with another process holding: %v", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	l3, err := TryAcquire(dir)
	if err != nil {
		t.Fatalf("TryAcquire after the holder died: %v", err)
	}
	l3.Release()
}

// TestHelperHold is the other process of TestExclusive.
func TestHelperHold(t *testing.T) {
	dir := os.Getenv("QUEUELOCK_HOLD")
	if dir == "" {
		t.Skip("helper process only")
	}
	if _, err := TryAcquire(dir); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("held")
	time.Sleep(time.Minute)
}

// A symbolic link in place of the lock file is not followed.
func TestNoFollow(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.Symlink(target, filepath.Join(dir, Name)); err != nil {
		t.Fatal(err)
	}
	if _, err := TryAcquire(dir); err == nil {
		t.Fatal("TryAcquire followed a symbolic link")
	}
	if _, err := os.Stat(target); err == nil {
		t.Fatal("the link's target was created")
	}
}
