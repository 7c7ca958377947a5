//go:build cgo && !osusergo

package users

/*
#include <errno.h>
#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>

static int mt_getpwnam_r(const char *name, struct passwd *pwd, char *buf, size_t n, int *found) {
	struct passwd *res = NULL;
	int err = getpwnam_r(name, pwd, buf, n, &res);
	*found = res != NULL;
	return err;
}

static int mt_getpwuid_r(uid_t uid, struct passwd *pwd, char *buf, size_t n, int *found) {
	struct passwd *res = NULL;
	int err = getpwuid_r(uid, pwd, buf, n, &res);
	*found = res != NULL;
	return err;
}
*/
import "C"

import (
	"syscall"
	"unsafe"
)

// sysLookup is getpwnam_r(3), as Postfix's mypwnam_err() calls it: a
// non-zero return is an error number ("the lookup could not be
// performed", mypwd.c), a zero return with no entry is "no such user".
// glibc returns the errno of the last NSS module that failed (ENOENT when
// nss_sss finds no sssd socket, ECONNREFUSED, EAGAIN, ...); "not found" in
// every module is 0 with no entry.
func sysLookup(name string) (User, bool, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	return getpw(func(pwd *C.struct_passwd, buf *C.char, n C.size_t, found *C.int) C.int {
		return C.mt_getpwnam_r(cname, pwd, buf, n, found)
	})
}

// sysLookupID is getpwuid_r(3), with sysLookup's meaning of its results.
func sysLookupID(uid uint32) (User, bool, error) {
	return getpw(func(pwd *C.struct_passwd, buf *C.char, n C.size_t, found *C.int) C.int {
		return C.mt_getpwuid_r(C.uid_t(uid), pwd, buf, n, found)
	})
}

// getpw calls a getpw*_r function with a buffer large enough.
func getpw(call func(pwd *C.struct_passwd, buf *C.char, n C.size_t, found *C.int) C.int) (User, bool, error) {
	size := C.sysconf(C._SC_GETPW_R_SIZE_MAX)
	if size < 1024 {
		size = 1024
	}
	for {
		buf := C.malloc(C.size_t(size))
		var pwd C.struct_passwd
		var found C.int
		errno := call(&pwd, (*C.char)(buf), C.size_t(size), &found)
		if errno == C.ERANGE && size < 1<<20 {
			C.free(buf)
			size *= 2
			continue
		}
		defer C.free(buf)
		if errno != 0 {
			return User{}, false, syscall.Errno(errno)
		}
		if found == 0 {
			return User{}, false, nil
		}
		return User{
			Name:  C.GoString(pwd.pw_name),
			UID:   uint32(pwd.pw_uid),
			GID:   uint32(pwd.pw_gid),
			Home:  C.GoString(pwd.pw_dir),
			Shell: C.GoString(pwd.pw_shell),
		}, true, nil
	}
}

// Backend names the way lookups reach the name service.
const Backend = "getpwnam_r"
