#include <zlib.h>
#include "mdatp_crypto.h"
#include <stdlib.h>
#include <openssl/evp.h>
#include <zstd.h>

struct mdatp_digests {
	EVP_MD_CTX *md5, *sha1, *sha256;
};

static EVP_MD_CTX *start(const EVP_MD *md)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	if (c && EVP_DigestInit_ex(c, md, NULL) != 1) {
		EVP_MD_CTX_free(c);
		return NULL;
	}
	return c;
}

mdatp_digests *mdatp_digests_new(unsigned which)
{
	mdatp_digests *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	if ((which & MDATP_MD5) && !(d->md5 = start(EVP_md5())))
		goto fail;
	if ((which & MDATP_SHA1) && !(d->sha1 = start(EVP_sha1())))
		goto fail;
	if ((which & MDATP_SHA256) && !(d->sha256 = start(EVP_sha256())))
		goto fail;
	return d;
fail:
	mdatp_digests_free(d);
	return NULL;
}

void mdatp_digests_update(mdatp_digests *d, const void *data, size_t len)
{
	if (d->md5)
		EVP_DigestUpdate(d->md5, data, len);
	if (d->sha1)
		EVP_DigestUpdate(d->sha1, data, len);
	if (d->sha256)
		EVP_DigestUpdate(d->sha256, data, len);
}

void mdatp_digests_final(mdatp_digests *d, uint8_t md5[16], uint8_t sha1[20], uint8_t sha256[32])
{
	unsigned int n;
	if (d->md5)
		EVP_DigestFinal_ex(d->md5, md5, &n);
	if (d->sha1)
		EVP_DigestFinal_ex(d->sha1, sha1, &n);
	if (d->sha256)
		EVP_DigestFinal_ex(d->sha256, sha256, &n);
}

void mdatp_digests_free(mdatp_digests *d)
{
	if (!d)
		return;
	EVP_MD_CTX_free(d->md5);
	EVP_MD_CTX_free(d->sha1);
	EVP_MD_CTX_free(d->sha256);
	free(d);
}

int mdatp_ed25519_verify(const uint8_t pub[32], const void *msg, size_t len, const uint8_t sig[64])
{
	EVP_PKEY *key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
	if (!key)
		return 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1 &&
		 EVP_DigestVerify(ctx, sig, 64, msg, len) == 1;
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(key);
	return ok ? 1 : 0;
}

long mdatp_zstd_decompress_exact(const void *src, size_t len, void *dst, size_t expected)
{
	unsigned long long declared = ZSTD_getFrameContentSize(src, len);
	if (declared == ZSTD_CONTENTSIZE_ERROR || declared == ZSTD_CONTENTSIZE_UNKNOWN || declared != expected)
		return -1;
	size_t n = ZSTD_decompress(dst, expected, src, len);
	if (ZSTD_isError(n) || n != expected)
		return -1;
	return (long)n;
}

long mdatp_inflate(const void *src, size_t len, void *dst, size_t cap)
{
	z_stream z = {0};
	if (inflateInit(&z) != Z_OK)
		return -1;
	z.next_in = (Bytef *)src;
	z.avail_in = len > UINT32_MAX ? UINT32_MAX : (uInt)len;
	z.next_out = dst;
	z.avail_out = cap > UINT32_MAX ? UINT32_MAX : (uInt)cap;
	int rc = inflate(&z, Z_FINISH);
	long produced = (long)z.total_out;
	inflateEnd(&z);
	if (rc == Z_STREAM_END || rc == Z_BUF_ERROR || (rc == Z_OK && produced > 0))
		return produced;
	return produced > 0 ? produced : -1;
}
