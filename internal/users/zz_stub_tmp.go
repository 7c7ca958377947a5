package users

type User struct {
	Name        string
	UID, GID    uint32
	Home, Shell string
}

func Lookup(name string) (User, bool, error) { return User{}, false, nil }

func LookupID(uid uint32) (User, bool, error) { return User{}, false, nil }
