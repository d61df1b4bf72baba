from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FIXTURES_ROOT = PROJECT_ROOT / "test_fixtures"
TINY_BERT = str(FIXTURES_ROOT / "tiny_bert")
