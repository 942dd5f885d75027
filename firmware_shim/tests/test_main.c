/* test_main.c: runs every C test of the firmware core and the host port's parsers. */
#include <string.h>

#include "check.h"

int check_failures;
int check_count;

void run_case(const char *name, test_fn fn)
{
    int before = check_failures;
    fn();
    printf("%-48s %s\n", name, check_failures == before ? "ok" : "FAILED");
}

int main(void)
{
    run_core_tests();
    run_candump_tests();
    printf("%d checks, %d failed\n", check_count, check_failures);
    return check_failures == 0 ? 0 : 1;
}
