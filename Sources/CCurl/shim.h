#include <curl/curl.h>

/* curl_easy_setopt and curl_easy_getinfo are variadic, which Swift cannot call: one typed
   wrapper per kind of argument. */

static inline CURLcode lstore_curl_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode lstore_curl_setopt_offset(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode lstore_curl_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode lstore_curl_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode lstore_curl_setopt_list(CURL *handle, CURLoption option, struct curl_slist *value) {
    return curl_easy_setopt(handle, option, value);
}

/* The read, write and header callbacks share this shape. */
typedef size_t (*lstore_curl_data_callback)(char *buffer, size_t size, size_t count, void *context);

static inline CURLcode lstore_curl_setopt_callback(CURL *handle, CURLoption option, lstore_curl_data_callback value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode lstore_curl_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}

static inline CURLcode lstore_curl_getinfo_offset(CURL *handle, CURLINFO info, curl_off_t *value) {
    return curl_easy_getinfo(handle, info, value);
}

static inline CURLcode lstore_curl_getinfo_string(CURL *handle, CURLINFO info, char **value) {
    return curl_easy_getinfo(handle, info, value);
}

/* Macros Swift does not import. */
static const size_t lstore_curl_readfunc_pause = CURL_READFUNC_PAUSE;
static const size_t lstore_curl_readfunc_abort = CURL_READFUNC_ABORT;
static const size_t lstore_curl_writefunc_pause = CURL_WRITEFUNC_PAUSE;
static const int lstore_curl_pause_cont = CURLPAUSE_CONT;
static const long lstore_curl_global_default = CURL_GLOBAL_DEFAULT;
