/* libyara for the scan engine: compile rule texts into one rule set, scan a
 * descriptor, report the first matching rule. A shim because YR_RULE's fields
 * sit behind macros and unions Swift does not import well. */
#ifndef MDATP_YARA_H
#define MDATP_YARA_H
#include <stddef.h>

typedef struct mdatp_yara_rules mdatp_yara_rules;

/* Compiles `count` rule texts (names[i] for messages). NULL on error, with the
 * first error "name:line: message" in err. */
mdatp_yara_rules *mdatp_yara_compile(const char *const *texts, const char *const *names, size_t count, char *err, size_t errlen);
void mdatp_yara_free(mdatp_yara_rules *r);
int mdatp_yara_rule_count(mdatp_yara_rules *r);

/* 1 and the rule's name (and its meta "threat_type", if any) when a rule
 * matches, 0 when none does, -1 on a scan error or timeout. */
int mdatp_yara_scan_fd(mdatp_yara_rules *r, int fd, int timeout_seconds, char *name, size_t namelen, char *type, size_t typelen);
int mdatp_yara_scan_mem(mdatp_yara_rules *r, const void *data, size_t len, int timeout_seconds, char *name, size_t namelen, char *type, size_t typelen);

#endif
