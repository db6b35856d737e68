/* Hyperscan for the body-signature engine: one database of every pattern,
 * scanned as a stream so a file is read once (hashes and patterns in the same
 * pass). The match callback stays in C: it checks each hit against the
 * pattern's offset rule and target type for this file and keeps one count per
 * pattern, so a pattern that fires on every byte costs a compare, not a call
 * into Swift. */
#ifndef MDATP_HS_H
#define MDATP_HS_H
#include <stddef.h>
#include <stdint.h>

/* Where a pattern must start (ClamAV offsets), resolved against each file. */
enum mdatp_hs_anchor {
	MDATP_AT_ANY = 0,      /* `*` */
	MDATP_AT_ABS = 1,      /* n */
	MDATP_AT_EOF = 2,      /* EOF-n (value = n) */
	MDATP_AT_EP = 3,       /* EP+n / EP-n (signed value) */
	MDATP_AT_SECTION = 4,  /* Sx+n */
	MDATP_AT_LAST = 5,     /* SL+n */
	MDATP_AT_IN_SECTION = 6 /* SEx: anywhere inside section x */
};

typedef struct {
	uint8_t anchor;     /* enum mdatp_hs_anchor */
	uint8_t verify;     /* 1: Hyperscan only prefilters, Swift verifies */
	uint8_t counted;    /* 1: count every hit (logical signatures with counts) */
	uint8_t reserved;
	uint32_t section;   /* x for Sx / SEx */
	uint32_t targets;   /* bit t = ClamAV target type t; 0 = any file */
	int64_t value;      /* n */
	uint64_t shift;     /* `,m`: start may be up to m bytes later */
} mdatp_hs_rule;

#define MDATP_HS_MAX_SECTIONS 128

typedef struct {
	uint64_t offset;
	uint64_t size;
} mdatp_hs_section;

/* What the offsets of one file resolve against. */
typedef struct {
	uint64_t size;
	uint32_t types;     /* bit t set when the file is of target type t */
	int32_t has_entry;
	uint64_t entry;     /* file offset of the entry point */
	const mdatp_hs_section *sections;
	uint32_t section_count;
} mdatp_hs_file;

/* Hyperscan's pattern flags (hs_compile.h), checked in hs.c. */
enum mdatp_hs_flag {
	MDATP_HS_CASELESS = 1,
	MDATP_HS_DOTALL = 2,
	MDATP_HS_SINGLEMATCH = 8,
	MDATP_HS_PREFILTER = 128,
	MDATP_HS_SOM_LEFTMOST = 256
};

typedef struct mdatp_hs_db mdatp_hs_db;
typedef struct mdatp_hs_scan mdatp_hs_scan;

/* Compiles `count` expressions (ids are their indices) with per-pattern flags
 * (HS_FLAG_* values). On failure returns NULL, *bad = index of the expression
 * at fault (or -1) and the message in err. */
mdatp_hs_db *mdatp_hs_compile(const char *const *exprs, const unsigned *flags, const mdatp_hs_rule *rules, size_t count,
			      int som, long *bad, char *err, size_t errlen);
void mdatp_hs_free(mdatp_hs_db *db);
size_t mdatp_hs_database_bytes(const mdatp_hs_db *db);

/* For the on-disk cache: the compiled database as bytes (free(*out) after), 0 or -1;
 * and a database from such bytes with its rules, or NULL when Hyperscan refuses them
 * (wrong version or platform, damaged). */
int mdatp_hs_serialize(const mdatp_hs_db *db, char **out, size_t *len);
mdatp_hs_db *mdatp_hs_deserialize(const char *bytes, size_t len, const mdatp_hs_rule *rules, size_t count);
/* Hyperscan's version and build (part of a cache key). */
const char *mdatp_hs_version(void);

/* A scanning session owns the scratch and stream: one per thread, reused. */
mdatp_hs_scan *mdatp_hs_scan_new(const mdatp_hs_db *db);
void mdatp_hs_scan_free(mdatp_hs_scan *s);
/* Starts a file: counts cleared, stream opened. 0 or -1. */
int mdatp_hs_begin(mdatp_hs_scan *s, const mdatp_hs_file *file);
int mdatp_hs_feed(mdatp_hs_scan *s, const void *data, size_t len);
/* Ends the file; returns the number of patterns hit (their ids via _hit). */
long mdatp_hs_end(mdatp_hs_scan *s);
uint32_t mdatp_hs_hit(const mdatp_hs_scan *s, size_t i);
/* How often pattern `id` matched in this file (capped at 255). */
uint32_t mdatp_hs_count(const mdatp_hs_scan *s, uint32_t id);
/* For verify patterns: the first end offset reported. */
uint64_t mdatp_hs_first_end(const mdatp_hs_scan *s, uint32_t id);

/* Start range allowed for a rule in a file; 0 when the rule cannot apply
 * (section missing, offset before 0, wrong target). */
int mdatp_hs_start_range(const mdatp_hs_rule *r, const mdatp_hs_file *f, uint64_t *lo, uint64_t *hi);

/* One regular expression in block mode, for rule engines that test short
 * strings (Sigma's `re`): compiled once, with its own scratch (one thread). */
typedef struct mdatp_re mdatp_re;
#define MDATP_RE_MULTILINE 4u /* HS_FLAG_MULTILINE */
#define MDATP_RE_UTF8 32u     /* HS_FLAG_UTF8 */
mdatp_re *mdatp_re_compile(const char *pattern, unsigned flags, char *err, size_t errlen);
void mdatp_re_free(mdatp_re *re);
/* 1 match, 0 none, -1 error. */
int mdatp_re_match(mdatp_re *re, const void *data, size_t len);

/* Many literals in one block-mode database (a rule engine's prefilter): each
 * scan reports the ids of the literals found (each at most once per scan). */
typedef struct mdatp_lits mdatp_lits;
mdatp_lits *mdatp_lits_compile(const char *const *lits, const size_t *lens, unsigned count, char *err, size_t errlen);
void mdatp_lits_free(mdatp_lits *l);
/* Writes up to max ids into out; returns how many (or -1). */
long mdatp_lits_scan(mdatp_lits *l, const void *data, size_t len, uint32_t *out, size_t max);

#endif
