package main

// table is every larder command, in the order larder help lists them. A
// new command is a type implementing runner, in a file of its own, and one
// entry here, in the group it belongs with. A name with a space is a
// subcommand of a group (cache, token, pin): larder CACHE alone lists the
// group.
var table = []*command{
	{name: "serve", summary: "run the server", helpSettings: true,
		new: func() runner { return &serveCmd{} }},
	{name: "check-config", summary: "validate the configuration and print it, secrets hidden", helpSettings: true,
		new: func() runner { return &checkConfigCmd{} }},

	// Caches, tokens and pins.
	{name: "cache create", usage: "NAME [--private] [--priority N] [--retention D] [--max-size S]", nargs: 1,
		summary: "create a cache with a new signing key",
		new:     func() runner { return &cacheCreateCmd{} }},
	{name: "cache update", usage: "NAME [--retention D] [--max-size S] [--upstream URL=KEY… | --no-upstreams] [--skip B] [--pull-through B]", nargs: 1,
		summary: "change what garbage collection keeps, and the upstream caches",
		new:     func() runner { return &cacheUpdateCmd{} }},
	{name: "cache list", summary: "list the caches, their sizes, policies and upstreams",
		new: func() runner { return &cacheListCmd{} }},
	{name: "cache delete", usage: "NAME", nargs: 1, summary: "delete a cache (its NAR files stay until gc)",
		new: func() runner { return &cacheDeleteCmd{} }},
	{name: "cache pubkey", usage: "NAME", nargs: 1, summary: "print a cache's public key, keyname:base64",
		new: func() runner { return &cachePubkeyCmd{} }},
	{name: "token create", usage: "--cache NAME|'GLOB'|'*' --perm read|write|admin [--expires D] [--description TEXT] [--s3]",
		summary: "create a token (with --s3 an S3 key pair), printed once",
		new:     func() runner { return &tokenCreateCmd{} }},
	{name: "token list", summary: "list the tokens",
		new: func() runner { return &tokenListCmd{} }},
	{name: "token revoke", usage: "ID", nargs: 1, summary: "revoke a token, by the ID token list shows",
		new: func() runner { return &tokenRevokeCmd{} }},
	{name: "pin add", usage: "CACHE STORE-PATH [--name N] [--keep-revisions K | --keep-days D]", nargs: 2,
		summary: "keep a path and its closure whatever the policy",
		new:     func() runner { return &pinAddCmd{} }},
	{name: "pin list", usage: "CACHE", nargs: 1, summary: "list a cache's pins",
		new: func() runner { return &pinListCmd{} }},
	{name: "pin remove", usage: "CACHE NAME [--path STORE-PATH]", nargs: 2, summary: "remove a pin, or one revision of it",
		new: func() runner { return &pinRemoveCmd{} }},

	// Clients of a server.
	{name: "push", usage: "--server URL [--cache NAME] [--token-file F | --netrc-file F] [--j N] [--zstd-level L] " +
		"[--part-size S] [--pin NAME [--keep-revisions K]] (PATHS… [--no-closure] | --stdin | --watch-store [--nix-db F])", nargs: anyArgs,
		noSettings: true, summary: "push store paths with their closures to a cache, as nix copy does, faster",
		new: func() runner { return &pushCmd{} }},

	// Maintenance.
	{name: "gc", usage: "[--cache NAME] [--dry-run] [--verbose]", summary: "collect garbage now",
		new: func() runner { return &gcCmd{} }},
	{name: "verify", usage: "[--cache NAME] [--full] [--dry-run]",
		summary: "check that every NAR file is stored (--full: and whole); withdraw the ones that are not",
		new:     func() runner { return &verifyCmd{} }},
	{name: "rechunk", summary: "store every NAR file still stored whole as chunks now, each checked before its whole copy goes",
		new: func() runner { return &rechunkCmd{} }},
	{name: "migrate", summary: "apply pending metadata schema migrations and exit",
		new: func() runner { return &migrateCmd{} }},
	{name: "migrate-data", usage: "--from FROM.toml --to TO.toml", noSettings: true,
		summary: "copy an installation to other stores, verified",
		new:     func() runner { return &migrateDataCmd{} }},

	{name: "completion", usage: "bash", nargs: 1, noSettings: true, summary: "print a bash script that completes larder's commands",
		new: func() runner { return completionCmd{} }},
	{name: "version", noSettings: true, summary: "print larder's version, commit, and the Go and platform that built it",
		new: func() runner { return versionCmd{} }},
	{name: "help", usage: "[COMMAND | settings]", nargs: anyArgs, noSettings: true,
		summary: "describe larder, a command, or the settings",
		new:     func() runner { return helpCmd{} }},
}

// commands returns the table.
func commands() []*command { return table }
