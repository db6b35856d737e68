#include "mdatp_yara.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yara.h>

struct mdatp_yara_rules {
	YR_RULES *rules;
	int count;
};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int init_rc;
static void init(void) { init_rc = yr_initialize(); }

struct compile_err {
	char *buf;
	size_t len;
	int seen;
};

static void on_error(int level, const char *file, int line, const YR_RULE *rule, const char *msg, void *user)
{
	struct compile_err *e = user;
	if (level != YARA_ERROR_LEVEL_ERROR || e->seen)
		return;
	e->seen = 1;
	snprintf(e->buf, e->len, "%s:%d: %s", file ? file : "rules", line, msg);
}

mdatp_yara_rules *mdatp_yara_compile(const char *const *texts, const char *const *names, size_t count, char *err, size_t errlen)
{
	pthread_once(&once, init);
	if (init_rc != ERROR_SUCCESS) {
		snprintf(err, errlen, "yara initialisation failed (%d)", init_rc);
		return NULL;
	}
	YR_COMPILER *c = NULL;
	if (yr_compiler_create(&c) != ERROR_SUCCESS) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	struct compile_err e = { err, errlen, 0 };
	yr_compiler_set_callback(c, on_error, &e);
	for (size_t i = 0; i < count; i++) {
		/* The callback reports the file as NULL for strings: name it ourselves. */
		if (yr_compiler_add_string(c, texts[i], NULL) > 0) {
			if (e.seen) {
				char tmp[512];
				snprintf(tmp, sizeof(tmp), "%s", err);
				const char *colon = strchr(tmp, ':');
				snprintf(err, errlen, "%s%s", names[i], colon ? colon : tmp);
			}
			yr_compiler_destroy(c);
			return NULL;
		}
	}
	YR_RULES *rules = NULL;
	if (yr_compiler_get_rules(c, &rules) != ERROR_SUCCESS) {
		snprintf(err, errlen, "cannot build the rule set");
		yr_compiler_destroy(c);
		return NULL;
	}
	yr_compiler_destroy(c);
	mdatp_yara_rules *r = calloc(1, sizeof(*r));
	r->rules = rules;
	YR_RULE *rule;
	yr_rules_foreach(rules, rule) { r->count++; }
	return r;
}

void mdatp_yara_free(mdatp_yara_rules *r)
{
	if (!r)
		return;
	yr_rules_destroy(r->rules);
	free(r);
}

int mdatp_yara_rule_count(mdatp_yara_rules *r) { return r ? r->count : 0; }

struct match {
	char *name, *type;
	size_t namelen, typelen;
	int found;
};

static int on_scan(YR_SCAN_CONTEXT *ctx, int message, void *data, void *user)
{
	struct match *m = user;
	if (message != CALLBACK_MSG_RULE_MATCHING)
		return CALLBACK_CONTINUE;
	YR_RULE *rule = data;
	m->found = 1;
	snprintf(m->name, m->namelen, "%s", rule->identifier);
	m->type[0] = 0;
	YR_META *meta;
	yr_rule_metas_foreach(rule, meta)
	{
		if (meta->type == META_TYPE_STRING && strcmp(meta->identifier, "threat_type") == 0)
			snprintf(m->type, m->typelen, "%s", meta->string);
	}
	return CALLBACK_ABORT; /* the first match is the verdict */
}

int mdatp_yara_scan_fd(mdatp_yara_rules *r, int fd, int timeout_seconds, char *name, size_t namelen, char *type, size_t typelen)
{
	struct match m = { name, type, namelen, typelen, 0 };
	int rc = yr_rules_scan_fd(r->rules, fd, SCAN_FLAGS_FAST_MODE, on_scan, &m, timeout_seconds);
	if (rc != ERROR_SUCCESS && !m.found)
		return -1;
	return m.found;
}

int mdatp_yara_scan_mem(mdatp_yara_rules *r, const void *data, size_t len, int timeout_seconds, char *name, size_t namelen, char *type, size_t typelen)
{
	struct match m = { name, type, namelen, typelen, 0 };
	int rc = yr_rules_scan_mem(r->rules, data, len, SCAN_FLAGS_FAST_MODE, on_scan, &m, timeout_seconds);
	if (rc != ERROR_SUCCESS && !m.found)
		return -1;
	return m.found;
}
