/* libcrypto digests for the scan engine: MD5, SHA-1 and SHA-256 of one
 * stream in a single pass. A shim because EVP's opaque contexts and
 * macros import poorly into Swift. */
#ifndef MDATP_CRYPTO_H
#define MDATP_CRYPTO_H
#include <stddef.h>
#include <stdint.h>

typedef struct mdatp_digests mdatp_digests;

enum { MDATP_MD5 = 1, MDATP_SHA1 = 2, MDATP_SHA256 = 4 };

/* Which digests to compute (a mask of the above); NULL on allocation failure. */
mdatp_digests *mdatp_digests_new(unsigned which);
void mdatp_digests_update(mdatp_digests *d, const void *data, size_t len);
/* Writes the finished digests (16, 20, 32 bytes) for those requested. */
void mdatp_digests_final(mdatp_digests *d, uint8_t md5[16], uint8_t sha1[20], uint8_t sha256[32]);
void mdatp_digests_free(mdatp_digests *d);

/* Ed25519 verification of msg against a raw 32-byte public key: 1 valid, 0 not. */
int mdatp_ed25519_verify(const uint8_t pub[32], const void *msg, size_t len, const uint8_t sig[64]);

/* zstd: decompresses one frame of exactly `expected` bytes into dst (capacity
 * >= expected). Returns expected, or -1 when the frame is bad, larger, or smaller. */
long mdatp_zstd_decompress_exact(const void *src, size_t len, void *dst, size_t expected);

/* zlib: inflates the stream at src (zlib header) into dst, at most `cap` bytes.
 * Returns the bytes produced (the stream may be cut short by cap or by the end
 * of src: what came out stands), -1 when src is not a zlib stream. */
long mdatp_inflate(const void *src, size_t len, void *dst, size_t cap);

#endif
