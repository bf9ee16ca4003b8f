from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.chain.selectors import chain_verify

SHOWN_PROBLEMS = 50


class Command(BaseCommand):
    help = (
        "Check the audit trail's hash chains against the rows and the signed checkpoints. "
        "Exits 1 and names the first modified, deleted or inserted entry if anything is off."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        result = chain_verify()
        for label, count in result.checked.items():
            self.stdout.write(f"{label}: {count} chained, {result.unsealed[label]} not sealed yet")
        self.stdout.write(f"{result.checkpoints} signed checkpoints checked")
        if not result.problems:
            self.stdout.write(self.style.SUCCESS("audit trail verified"))
            return
        for problem in result.problems[:SHOWN_PROBLEMS]:
            self.stdout.write(problem.message)
        raise CommandError(
            f"audit trail verification FAILED ({len(result.problems)} problems); first: "
            f"{result.problems[0].message}",
            returncode=1,
        )
