package users

var (
	GetentLookup = getentLookup
	SysLookup    = sysLookup
)
