package master

import (
	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/route"
)

// Router is the router serve builds from cfg, on the tables Check
// opened, for commands that must route as serve does (preflight).
func Router(cfg *config.Config, opened map[string]maps.Table) (*route.Router, error) {
	t, err := openTables(cfg, opened)
	if err != nil {
		return nil, err
	}
	mf, _ := loadMaster(cfg)
	return routerFor(cfg, t, mf), nil
}
