package main

import "github.com/mailtee/mailtee/internal/srs"

// SRS adds the checks of srs_domain (its MX and SPF) to preflight.
func init() { preflightExtra = append(preflightExtra, srs.PreflightCheck) }
