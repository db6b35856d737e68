#include "mdatp_hs.h"
#include <hs/hs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(MDATP_HS_CASELESS == HS_FLAG_CASELESS && MDATP_HS_DOTALL == HS_FLAG_DOTALL &&
		       MDATP_HS_SINGLEMATCH == HS_FLAG_SINGLEMATCH && MDATP_HS_PREFILTER == HS_FLAG_PREFILTER &&
		       MDATP_HS_SOM_LEFTMOST == HS_FLAG_SOM_LEFTMOST, "hyperscan flag values");

struct mdatp_hs_db {
	hs_database_t *db;
	mdatp_hs_rule *rules;
	size_t count;
	size_t bytes;
};

struct mdatp_hs_scan {
	const mdatp_hs_db *db;
	hs_scratch_t *scratch;
	hs_stream_t *stream;
	mdatp_hs_file file;
	mdatp_hs_section sections[MDATP_HS_MAX_SECTIONS]; /* the file's, copied: Swift's buffer may move */
	uint8_t *counts;      /* per pattern */
	uint64_t *first_end;  /* per pattern, for verify patterns */
	uint32_t *hits;       /* ids with counts > 0, in order of first hit */
	size_t nhits;
};

mdatp_hs_db *mdatp_hs_compile(const char *const *exprs, const unsigned *flags, const mdatp_hs_rule *rules, size_t count,
			      int som, long *bad, char *err, size_t errlen)
{
	*bad = -1;
	if (count == 0 || count > 0x7fffffff) {
		snprintf(err, errlen, "pattern count %zu out of range", count);
		return NULL;
	}
	unsigned *ids = malloc(count * sizeof *ids);
	mdatp_hs_db *d = calloc(1, sizeof *d);
	if (d)
		d->rules = malloc(count * sizeof *d->rules);
	if (!ids || !d || !d->rules) {
		free(ids);
		if (d)
			free(d->rules);
		free(d);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < count; i++)
		ids[i] = (unsigned)i;
	memcpy(d->rules, rules, count * sizeof *rules);
	d->count = count;
	unsigned mode = HS_MODE_STREAM | (som ? HS_MODE_SOM_HORIZON_LARGE : 0);
	hs_compile_error_t *ce = NULL;
	hs_error_t rc = hs_compile_multi(exprs, flags, ids, (unsigned)count, mode, NULL, &d->db, &ce);
	free(ids);
	if (rc != HS_SUCCESS) {
		if (ce) {
			*bad = ce->expression;
			snprintf(err, errlen, "%s", ce->message);
			hs_free_compile_error(ce);
		} else {
			snprintf(err, errlen, "hyperscan error %d", rc);
		}
		free(d->rules);
		free(d);
		return NULL;
	}
	hs_database_size(d->db, &d->bytes);
	return d;
}

int mdatp_hs_serialize(const mdatp_hs_db *d, char **out, size_t *len)
{
	return hs_serialize_database(d->db, out, len) == HS_SUCCESS ? 0 : -1;
}

mdatp_hs_db *mdatp_hs_deserialize(const char *bytes, size_t len, const mdatp_hs_rule *rules, size_t count)
{
	if (count == 0 || count > 0x7fffffff)
		return NULL;
	mdatp_hs_db *d = calloc(1, sizeof *d);
	if (!d)
		return NULL;
	d->rules = malloc(count * sizeof *d->rules);
	if (!d->rules || hs_deserialize_database(bytes, len, &d->db) != HS_SUCCESS) {
		free(d->rules);
		free(d);
		return NULL;
	}
	memcpy(d->rules, rules, count * sizeof *rules);
	d->count = count;
	hs_database_size(d->db, &d->bytes);
	return d;
}

const char *mdatp_hs_version(void) { return hs_version(); }

void mdatp_hs_free(mdatp_hs_db *d)
{
	if (!d)
		return;
	hs_free_database(d->db);
	free(d->rules);
	free(d);
}

size_t mdatp_hs_database_bytes(const mdatp_hs_db *d) { return d->bytes + d->count * sizeof *d->rules; }

mdatp_hs_scan *mdatp_hs_scan_new(const mdatp_hs_db *db)
{
	mdatp_hs_scan *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->db = db;
	s->counts = calloc(db->count, 1);
	s->first_end = calloc(db->count, sizeof *s->first_end);
	s->hits = malloc(db->count * sizeof *s->hits);
	if (!s->counts || !s->first_end || !s->hits || hs_alloc_scratch(db->db, &s->scratch) != HS_SUCCESS) {
		mdatp_hs_scan_free(s);
		return NULL;
	}
	return s;
}

void mdatp_hs_scan_free(mdatp_hs_scan *s)
{
	if (!s)
		return;
	if (s->stream)
		hs_close_stream(s->stream, s->scratch, NULL, NULL);
	if (s->scratch)
		hs_free_scratch(s->scratch);
	free(s->counts);
	free(s->first_end);
	free(s->hits);
	free(s);
}

int mdatp_hs_start_range(const mdatp_hs_rule *r, const mdatp_hs_file *f, uint64_t *lo, uint64_t *hi)
{
	if (r->targets && !(r->targets & f->types))
		return 0;
	int64_t base;
	switch (r->anchor) {
	case MDATP_AT_ANY:
		*lo = 0;
		*hi = UINT64_MAX;
		return 1;
	case MDATP_AT_ABS:
		base = r->value;
		break;
	case MDATP_AT_EOF:
		base = (int64_t)f->size - r->value;
		break;
	case MDATP_AT_EP:
		if (!f->has_entry)
			return 0;
		base = (int64_t)f->entry + r->value;
		break;
	case MDATP_AT_SECTION:
	case MDATP_AT_IN_SECTION:
		if (r->section >= f->section_count)
			return 0;
		base = (int64_t)f->sections[r->section].offset + (r->anchor == MDATP_AT_SECTION ? r->value : 0);
		break;
	case MDATP_AT_LAST:
		if (f->section_count == 0)
			return 0;
		base = (int64_t)f->sections[f->section_count - 1].offset + r->value;
		break;
	default:
		return 0;
	}
	if (base < 0)
		return 0;
	*lo = (uint64_t)base;
	if (r->anchor == MDATP_AT_IN_SECTION) {
		uint64_t sz = f->sections[r->section].size;
		*hi = sz ? *lo + sz - 1 : *lo;
	} else {
		*hi = *lo + r->shift;
	}
	return 1;
}

static int on_match(unsigned id, unsigned long long from, unsigned long long to, unsigned flags, void *ctx)
{
	(void)flags;
	mdatp_hs_scan *s = ctx;
	const mdatp_hs_rule *r = &s->db->rules[id];
	/* Verify patterns are prefilters (no start offset): Swift checks them. */
	if (!r->verify && r->anchor != MDATP_AT_ANY) {
		uint64_t lo, hi;
		if (!mdatp_hs_start_range(r, &s->file, &lo, &hi) || from < lo || from > hi)
			return 0;
	} else if (r->targets && !(r->targets & s->file.types)) {
		return 0;
	}
	if (s->counts[id] == 0) {
		s->hits[s->nhits++] = id;
		s->first_end[id] = to;
	}
	if (s->counts[id] < 255)
		s->counts[id]++;
	return 0;
}

int mdatp_hs_begin(mdatp_hs_scan *s, const mdatp_hs_file *file)
{
	for (size_t i = 0; i < s->nhits; i++)
		s->counts[s->hits[i]] = 0;
	s->nhits = 0;
	s->file = *file;
	s->file.section_count = file->section_count < MDATP_HS_MAX_SECTIONS ? file->section_count : MDATP_HS_MAX_SECTIONS;
	if (s->file.section_count)
		memcpy(s->sections, file->sections, s->file.section_count * sizeof *s->sections);
	s->file.sections = s->sections;
	if (s->stream) {
		hs_close_stream(s->stream, s->scratch, NULL, NULL);
		s->stream = NULL;
	}
	return hs_open_stream(s->db->db, 0, &s->stream) == HS_SUCCESS ? 0 : -1;
}

int mdatp_hs_feed(mdatp_hs_scan *s, const void *data, size_t len)
{
	if (!s->stream)
		return -1;
	while (len) {
		unsigned n = len > (1u << 30) ? (1u << 30) : (unsigned)len;
		if (hs_scan_stream(s->stream, data, n, 0, s->scratch, on_match, s) != HS_SUCCESS)
			return -1;
		data = (const char *)data + n;
		len -= n;
	}
	return 0;
}

long mdatp_hs_end(mdatp_hs_scan *s)
{
	if (!s->stream)
		return -1;
	hs_error_t rc = hs_close_stream(s->stream, s->scratch, on_match, s);
	s->stream = NULL;
	return rc == HS_SUCCESS ? (long)s->nhits : -1;
}

uint32_t mdatp_hs_hit(const mdatp_hs_scan *s, size_t i) { return i < s->nhits ? s->hits[i] : 0; }
uint32_t mdatp_hs_count(const mdatp_hs_scan *s, uint32_t id) { return id < s->db->count ? s->counts[id] : 0; }
uint64_t mdatp_hs_first_end(const mdatp_hs_scan *s, uint32_t id) { return id < s->db->count ? s->first_end[id] : 0; }

struct mdatp_re {
	hs_database_t *db;
	hs_scratch_t *scratch;
};

_Static_assert(MDATP_RE_MULTILINE == HS_FLAG_MULTILINE && MDATP_RE_UTF8 == HS_FLAG_UTF8, "hyperscan flag values");

mdatp_re *mdatp_re_compile(const char *pattern, unsigned flags, char *err, size_t errlen)
{
	hs_database_t *db = NULL;
	hs_compile_error_t *ce = NULL;
	/* SINGLEMATCH: we only ask whether it matches; ALLOWEMPTY: `.*` is a valid rule. */
	if (hs_compile(pattern, flags | HS_FLAG_SINGLEMATCH | HS_FLAG_ALLOWEMPTY, HS_MODE_BLOCK, NULL, &db, &ce) != HS_SUCCESS) {
		snprintf(err, errlen, "%s", ce && ce->message ? ce->message : "cannot compile");
		hs_free_compile_error(ce);
		return NULL;
	}
	mdatp_re *re = calloc(1, sizeof *re);
	if (!re || hs_alloc_scratch(db, &re->scratch) != HS_SUCCESS) {
		snprintf(err, errlen, "out of memory");
		hs_free_database(db);
		free(re);
		return NULL;
	}
	re->db = db;
	return re;
}

void mdatp_re_free(mdatp_re *re)
{
	if (!re)
		return;
	hs_free_scratch(re->scratch);
	hs_free_database(re->db);
	free(re);
}

static int re_on_match(unsigned id, unsigned long long from, unsigned long long to, unsigned flags, void *ctx)
{
	(void)id, (void)from, (void)to, (void)flags;
	*(int *)ctx = 1;
	return 1; /* stop: one match answers the question */
}

int mdatp_re_match(mdatp_re *re, const void *data, size_t len)
{
	int hit = 0;
	if (len > 0xffffffffu)
		return -1;
	hs_error_t rc = hs_scan(re->db, data ? data : "", (unsigned)len, 0, re->scratch, re_on_match, &hit);
	if (rc != HS_SUCCESS && rc != HS_SCAN_TERMINATED)
		return -1;
	return hit;
}

struct mdatp_lits {
	hs_database_t *db;
	hs_scratch_t *scratch;
};

mdatp_lits *mdatp_lits_compile(const char *const *lits, const size_t *lens, unsigned count, char *err, size_t errlen)
{
	if (count == 0) {
		snprintf(err, errlen, "no literals");
		return NULL;
	}
	unsigned *ids = malloc(count * sizeof *ids), *flags = malloc(count * sizeof *flags);
	if (!ids || !flags) {
		free(ids), free(flags);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (unsigned i = 0; i < count; i++)
		ids[i] = i, flags[i] = HS_FLAG_SINGLEMATCH;
	hs_database_t *db = NULL;
	hs_compile_error_t *ce = NULL;
	hs_error_t rc = hs_compile_lit_multi(lits, flags, ids, lens, count, HS_MODE_BLOCK, NULL, &db, &ce);
	free(ids), free(flags);
	if (rc != HS_SUCCESS) {
		snprintf(err, errlen, "%s", ce && ce->message ? ce->message : "cannot compile");
		hs_free_compile_error(ce);
		return NULL;
	}
	mdatp_lits *l = calloc(1, sizeof *l);
	if (!l || hs_alloc_scratch(db, &l->scratch) != HS_SUCCESS) {
		hs_free_database(db);
		free(l);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	l->db = db;
	return l;
}

void mdatp_lits_free(mdatp_lits *l)
{
	if (!l)
		return;
	hs_free_scratch(l->scratch);
	hs_free_database(l->db);
	free(l);
}

struct lits_ctx {
	uint32_t *out;
	size_t max, n;
};

static int lits_on_match(unsigned id, unsigned long long from, unsigned long long to, unsigned flags, void *ctx)
{
	(void)from, (void)to, (void)flags;
	struct lits_ctx *c = ctx;
	if (c->n < c->max)
		c->out[c->n] = id;
	c->n++;
	return 0;
}

long mdatp_lits_scan(mdatp_lits *l, const void *data, size_t len, uint32_t *out, size_t max)
{
	if (len > 0xffffffffu)
		return -1;
	struct lits_ctx c = { out, max, 0 };
	hs_error_t rc = hs_scan(l->db, data ? data : "", (unsigned)len, 0, l->scratch, lits_on_match, &c);
	if (rc != HS_SUCCESS)
		return -1;
	return (long)(c.n < max ? c.n : max);
}
