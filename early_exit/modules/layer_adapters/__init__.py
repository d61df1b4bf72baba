from early_exit.modules.layer_adapters.layer_adapter import LayerAdapter, packed_attention
from early_exit.modules.layer_adapters.bert import BertLayerAdapter
from early_exit.modules.layer_adapters.distilbert import DistilBertLayerAdapter

# Tried in this order on a loaded encoder.
LAYER_ADAPTERS = (BertLayerAdapter(), DistilBertLayerAdapter())
