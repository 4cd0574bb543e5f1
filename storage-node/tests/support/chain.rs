//! The local network as the node's localnet tests use it: its market, funded by its
//! faucet, with registered providers, proposals and proof logs.

use anchor_lang::Discriminator;
use cairn_chain::{deal_pda, proof_log_pda, provider_pda, proving, Pubkey};
use cairn_localnet::{Localnet, LocalnetInfo};
use cairn_storage_node::{config::Config, node::RunningNode, store};
use cairn_tests::rpc::{poll, TestChain, SOL};
use cairn_tests::TestShard;
use solana_commitment_config::CommitmentConfig;
use solana_keypair::Keypair;
use solana_signer::Signer;
use std::{path::Path, time::Duration};
use storage_market::{
    constants::{log_page, LOG_PAGE_EPOCHS},
    instructions::{ProposeDealArgs, RegisterProviderArgs},
    state::{Deal, ProofLog},
};

/// The local network's market, funded by its faucet (the shared test client)
/// and what these tests add: deals, providers and proposals.
pub struct Chain {
    pub chain: TestChain,
    pub info: LocalnetInfo,
}

impl std::ops::Deref for Chain {
    type Target = TestChain;
    fn deref(&self) -> &TestChain {
        &self.chain
    }
}

impl Chain {
    pub fn new(localnet: &Localnet) -> Chain {
        let info = localnet.info().clone();
        Chain {
            chain: TestChain::connect(&info.rpc_url, &info.faucet_keypair, info.market_ix()),
            info,
        }
    }

    pub fn deal(&self, key: &Pubkey) -> Deal {
        self.fetch(key)
    }

    /// A registered, staked provider whose operator is funded.
    pub fn provider(&self, operator: &Keypair) -> (Keypair, Pubkey) {
        let authority = Keypair::new();
        self.airdrop(&authority.pubkey(), 10 * SOL);
        self.airdrop(&operator.pubkey(), 10 * SOL);
        let stake = 10_000_000;
        let authority_token = self.token_account(&authority.pubkey(), stake);
        let register = self.ix.register_provider_ix(
            &authority.pubkey(),
            RegisterProviderArgs {
                operator: operator.pubkey(),
                endpoint: "127.0.0.1:7000".into(),
                capacity_bytes: 1 << 30,
                price_per_mib_epoch: 100,
            },
        );
        let deposit = self
            .ix
            .deposit_stake_ix(&authority.pubkey(), &authority_token, stake);
        self.send(&[register, deposit], &[&authority]);
        let provider = provider_pda(&authority.pubkey());
        (authority, provider)
    }

    /// A funded client proposes `shards` (shard `first + i` of dataset
    /// `dataset_id`) to `provider` for `epochs` epochs, two per transaction
    /// (what fits one).
    pub fn propose_all(
        &self,
        client: &Keypair,
        provider: &Pubkey,
        dataset_id: [u8; 32],
        shards: &[&TestShard],
        epochs: u64,
    ) -> Vec<Pubkey> {
        let client_token = self.token_account(&client.pubkey(), 100_000_000);
        let n = shards.len() as u16;
        let mut deals = Vec::new();
        for (batch, chunk) in shards.chunks(2).enumerate() {
            let ixs: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(i, shard)| {
                    let index = (batch * 2 + i) as u16;
                    deals.push(deal_pda(&client.pubkey(), &dataset_id, index, 0));
                    let args = ProposeDealArgs {
                        dataset_id: cairn_chain::dataset_id(&client.pubkey(), &dataset_id),
                        dataset_nonce: dataset_id,
                        group_id: dataset_id,
                        group: 0,
                        shard_index: index,
                        generation: 0,
                        k: 1.max(n.saturating_sub(2)),
                        n,
                        shard_root: shard.root(),
                        shard_bytes: shard.data.len() as u64,
                        duration_epochs: epochs,
                        max_price_per_epoch: u64::MAX,
                    };
                    self.ix
                        .propose_deal_ix(&client.pubkey(), provider, &client_token, args)
                })
                .collect();
            self.send(&ixs, &[client]);
        }
        deals
    }

    /// A funded client proposing one shard to `provider` for `epochs` epochs.
    pub fn propose(
        &self,
        client: &Keypair,
        provider: &Pubkey,
        shard: &TestShard,
        epochs: u64,
    ) -> Pubkey {
        self.propose_all(client, provider, [7u8; 32], &[shard], epochs)[0]
    }

    /// Waits until `node`'s lookup table is rooted with `provider`'s first
    /// addresses: a leader resolves lookup tables from its root bank, so the table
    /// serves proofs from then on.
    pub fn wait_lookup_table_rooted(&self, node: &RunningNode, provider: &Pubkey) {
        let wanted = proving::lookup_table_addresses(provider, 0, 1);
        poll(
            "the node's lookup table rooted",
            Duration::from_secs(120),
            || {
                let table = node.node.store.meta(store::LOOKUP_TABLE_KEY).unwrap()?;
                let table = Pubkey::new_from_array(table[..32].try_into().unwrap());
                let rooted = self
                    .rpc
                    .get_account_with_commitment(&table, CommitmentConfig::finalized())
                    .ok()?
                    .value?;
                let holds = proving::lookup_table_contents(&rooted.data)?;
                wanted.iter().all(|a| holds.contains(a)).then_some(())
            },
        );
    }

    /// Whether `provider`'s bit for `epoch` is set in its `ProofLog`
    /// (`proof_log_pda`, bit `epoch % 8192`).
    pub fn proven(&self, provider: &Pubkey, epoch: u64) -> bool {
        let page = log_page(epoch);
        let Ok(data) = self.rpc.get_account_data(&proof_log_pda(provider, page)) else {
            return false; // no proof-log page yet
        };
        assert_eq!(&data[..8], ProofLog::DISCRIMINATOR, "a proof log");
        assert_eq!(&data[8..40], provider.as_ref(), "the provider's proof log");
        let bit = epoch % LOG_PAGE_EPOCHS;
        data[ProofLog::BITS_OFFSET + (bit / 8) as usize] & (1 << (bit % 8)) != 0
    }
}

pub fn write_keypair(kp: &Keypair, path: &Path) {
    std::fs::write(path, format!("{:?}", kp.to_bytes().to_vec())).unwrap();
}

pub fn node_config(dir: &Path, chain: &Chain, authority: &Pubkey, operator: &Keypair) -> Config {
    std::fs::create_dir_all(dir).unwrap();
    let keypair = dir.join("operator.json");
    write_keypair(operator, &keypair);
    Config {
        data_dir: dir.join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".into(),
        rpc_url: chain.info.rpc_url.clone(),
        provider_authority: authority.to_string(),
        operator_keypair: keypair,
        checkpoint_bytes: 1 << 20,
        poll_ms: 200,
        ..Config::default()
    }
}

pub fn operator_key(kp: &Keypair) -> Pubkey {
    Pubkey::new_from_array(kp.pubkey().to_bytes())
}
