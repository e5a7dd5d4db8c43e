/*
 * unicode.c - the little Unicode the tokenizers need: UTF-8 decoding that
 * never fails, general categories and White_Space from the generated tables
 * (unicode_data.c), and GPT-2's byte-level alphabet.
 */
#include "engine/tokenizer_int.h"

/*
 * Decodes one code point at s[pos]. Anything that is not well-formed UTF-8
 * (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF) decodes as
 * the pseudo code point UNICODE_BAD_BYTE + byte, one byte long.
 */
uint32_t unicode__decode(const uint8_t *s, size_t pos, size_t end, size_t *len)
{
    uint8_t b0 = s[pos];
    size_t n;
    uint32_t cp, min;

    if (b0 < 0x80) {
        *len = 1;
        return b0;
    }
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        n = 2;
        cp = b0 & 0x1Fu;
        min = 0x80;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        n = 3;
        cp = b0 & 0x0Fu;
        min = 0x800;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        n = 4;
        cp = b0 & 0x07u;
        min = 0x10000;
    } else {
        goto bad;
    }
    if (end - pos < n) goto bad;
    for (size_t i = 1; i < n; i++) {
        uint8_t b = s[pos + i];
        if ((b & 0xC0) != 0x80) goto bad;
        cp = (cp << 6) | (b & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) goto bad;
    *len = n;
    return cp;
bad:
    *len = 1;
    return UNICODE_BAD_BYTE + b0;
}

/* Returns the general category of cp by binary search over the ranges. */
enum ucat unicode__cat(uint32_t cp)
{
    /* Printable ASCII is hot: letters, digits, space. */
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return cp >= 'a' ? UCAT_LL : UCAT_LU;
        if (cp >= '0' && cp <= '9') return UCAT_ND;
        if (cp == ' ') return UCAT_ZS;
    }
    if (cp >= 0x110000) return UCAT_CN;
    size_t lo = 0, hi = unicode__n_cat_ranges;
    /* Find the last range whose first code point is <= cp. */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if ((unicode__cat_ranges[mid] >> 5) <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return (enum ucat)(unicode__cat_ranges[lo] & 0x1Fu);
}

/* True if cp has the White_Space property (what \s means in the regexes). */
bool unicode__is_space(uint32_t cp)
{
    if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
    for (size_t i = 0; i < unicode__n_white_space; i++)
        if (unicode__white_space[i] == cp) return true;
    return false;
}

/*
 * GPT-2's bytes_to_unicode(): printable Latin-1 bytes (0x21-0x7E, 0xA1-0xAC,
 * 0xAE-0xFF) stand for themselves; the other 68 bytes take U+0100, U+0101, ...
 * in byte order.
 */
static bool byte_is_printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t unicode__byte_to_cp(uint8_t b)
{
    if (byte_is_printable(b)) return b;
    uint32_t n = 0;
    for (unsigned i = 0; i < b; i++)
        if (!byte_is_printable(i)) n++;
    return 256 + n;
}

int unicode__cp_to_byte(uint32_t cp)
{
    if (cp < 256) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    uint32_t n = cp - 256;
    for (unsigned i = 0; i < 256; i++) {
        if (byte_is_printable(i)) continue;
        if (n == 0) return (int)i;
        n--;
    }
    return -1;
}
