#ifndef PAYHOOK_COPENSSL_SHIM_H
#define PAYHOOK_COPENSSL_SHIM_H
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#endif
